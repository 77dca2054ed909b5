// Debian's mosquitto broker and its command-line clients (mosquitto_pub, mosquitto_sub) as real peers.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, chmodSync, constants, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort, tempDir } from './processes.js';

/** The absolute path of `name` on PATH or in the sbin directories (Debian installs mosquitto in /usr/sbin). */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}

export const MOSQUITTO = which('mosquitto');
export const MOSQUITTO_PUB = which('mosquitto_pub');
export const MOSQUITTO_SUB = which('mosquitto_sub');
const MOSQUITTO_PASSWD = which('mosquitto_passwd');
const STDBUF = which('stdbuf');

/** Throws with the fix when the Debian packages are missing (scripts/install-test-deps.sh installs them). */
export function requireMosquitto(): { broker: string; pub: string; sub: string } {
  if (!MOSQUITTO || !MOSQUITTO_PUB || !MOSQUITTO_SUB)
    throw new Error(
      'mosquitto and mosquitto-clients are not installed: run scripts/install-test-deps.sh ' +
        '(apt-get install -y mosquitto mosquitto-clients)',
    );
  return { broker: MOSQUITTO, pub: MOSQUITTO_PUB, sub: MOSQUITTO_SUB };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Every client process started here that has not exited yet, so a failed test leaves none behind. */
const clients = new Set<ChildProcess>();
function track(child: ChildProcess): ChildProcess {
  clients.add(child);
  child.once('exit', () => clients.delete(child));
  return child;
}

/** SIGKILLs the mosquitto_pub/mosquitto_sub processes this module started that are still running. */
export async function killClients(): Promise<void> {
  await Promise.all([...clients].map((c) => waitExit(c, 'SIGKILL')));
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; rejects when `alive()` turns false. */
export async function waitForTcp(port: number, ms = 5000, alive: () => boolean = () => true): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process meant to listen on port ${port} has exited`);
    if (Date.now() > end) throw new Error(`nothing accepts TCP on 127.0.0.1:${port} after ${ms} ms`);
    await sleep(20);
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill(signal);
  });
}

/** A mosquitto user: its password and its ACL lines (`topic readwrite FILTER`, …). */
export interface MosquittoUser {
  username: string;
  password: string;
  acl: string[];
}

export interface MosquittoOptions {
  /** Sessions and their queued messages (unbounded) saved on SIGTERM and restored on the next start. */
  persistent?: boolean;
  /** With users, anonymous clients are refused and each user gets only its ACL. */
  users?: MosquittoUser[];
  /** More mosquitto.conf lines (for the listener: they follow it). */
  extra?: string[];
}

/**
 * A mosquitto broker on 127.0.0.1, started from a config file in a temp dir. It cannot bind port 0 and report
 * it, so the port is picked with freePort() and kept for restarts. Persistence is off unless `persistent`.
 */
export class Mosquitto {
  port = 0;
  /** mosquitto's own log (stderr), for failure messages. */
  readonly log: string[] = [];
  private child?: ChildProcess;
  private readonly dir = tempDir('lb-mosquitto-');

  constructor(private readonly options: MosquittoOptions = {}) {}

  async start(port = this.port): Promise<number> {
    const { broker } = requireMosquitto();
    this.port = port || (await freePort());
    const file = join(this.dir.path, 'mosquitto.conf');
    writeFileSync(
      file,
      [
        `listener ${this.port} 127.0.0.1`,
        ...this.accessLines(),
        ...(this.options.extra ?? []),
        ...(this.options.persistent
          ? ['persistence true', `persistence_location ${this.dir.path}/`, 'max_queued_messages 0']
          : ['persistence false']),
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        'log_type notice',
        'log_type information',
        '',
      ].join('\n'),
    );
    const child = spawn(broker, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr?.on('data', (d: Buffer) => {
      this.log.push(d.toString());
      if (this.log.length > 2000) this.log.splice(0, 1000);
    });
    try {
      await waitForTcp(this.port, 5000, () => !exited(child));
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`mosquitto did not start: ${(err as Error).message}\n${this.log.join('')}`);
    }
    return this.port;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** `allow_anonymous true`, or a password file and an ACL file for the configured users. */
  private accessLines(): string[] {
    const users = this.options.users;
    if (!users?.length) return ['allow_anonymous true'];
    if (!MOSQUITTO_PASSWD) throw new Error('mosquitto_passwd is missing: run scripts/install-test-deps.sh');
    const passwords = join(this.dir.path, 'passwords');
    const acl = join(this.dir.path, 'acl');
    writeFileSync(passwords, '');
    for (const u of users) execFileSync(MOSQUITTO_PASSWD, ['-b', passwords, u.username, u.password]);
    writeFileSync(acl, users.flatMap((u) => [`user ${u.username}`, ...u.acl, '']).join('\n'));
    // Started as root, mosquitto reads them as its own user (mosquitto): test credentials, readable to all.
    chmodSync(this.dir.path, 0o755);
    for (const f of [passwords, acl]) chmodSync(f, 0o644);
    return ['allow_anonymous false', `password_file ${passwords}`, `acl_file ${acl}`];
  }

  get running(): boolean {
    return this.child !== undefined && !exited(this.child);
  }

  /** SIGSTOP freezes it: connections stay open, nothing is read or acknowledged. */
  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }

  /** SIGKILL by default: the broker vanishes mid-stream, as in a crash. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child) await waitExit(child, signal);
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    this.dir.remove();
  }
}

/** One message as mosquitto_sub printed it (payload in hex, so any bytes survive). */
export interface SubMessage {
  topic: string;
  retain: boolean;
  qos: number;
  payload: Buffer;
  /** MQTT 5 correlation data as text ('' when absent). */
  correlation: string;
  /** MQTT 5 user properties, in order (empty when absent or on MQTT 3.1.1). */
  userProperties: [string, string][];
  /** The `lb-msg-id` user property, when present. */
  msgId: string | undefined;
}

export interface ClientOptions {
  port: number;
  version?: 'mqttv5' | 'mqttv311';
  username?: string;
  password?: string;
  clientId?: string;
}

function clientArgs(o: ClientOptions): string[] {
  return [
    '-h',
    '127.0.0.1',
    '-p',
    String(o.port),
    '-V',
    o.version ?? 'mqttv5',
    ...(o.clientId ? ['-i', o.clientId] : []),
    ...(o.username !== undefined ? ['-u', o.username] : []),
    ...(o.password !== undefined ? ['-P', o.password] : []),
  ];
}

/** `%P` prints `key:value key:value`; a value may hold spaces, a key holds no colon. */
function parseUserProperties(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const token of text.split(' ')) {
    const colon = token.indexOf(':');
    const last = out[out.length - 1];
    if (colon > 0) out.push([token.slice(0, colon), token.slice(colon + 1)]);
    else if (last) last[1] += ` ${token}`;
  }
  return out;
}

const FORMAT = 'MSG\\t%t\\t%r\\t%q\\t%x\\t%D\\t%P';

/**
 * A `mosquitto_sub` process (QoS 1) recording what it receives. `start` resolves after its SUBACK (read from
 * the `-d` debug output); the messages themselves come formatted with `-F`.
 */
export class MosquittoSub {
  readonly messages: SubMessage[] = [];
  readonly output: string[] = [];
  private constructor(readonly child: ChildProcess) {}

  static start(o: ClientOptions & { topics: string[]; ms?: number }): Promise<MosquittoSub> {
    const { sub: bin } = requireMosquitto();
    const args = [...clientArgs(o), '-q', '1', '-d', '-F', FORMAT, ...o.topics.flatMap((t) => ['-t', t])];
    // Its debug lines (the SUBACK) are block-buffered on a pipe: stdbuf (coreutils; it execs, same pid) fixes that.
    const child = track(
      STDBUF
        ? spawn(STDBUF, ['-oL', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    const sub = new MosquittoSub(child);
    child.stderr?.on('data', (d: Buffer) => sub.output.push(d.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail('no SUBACK'), o.ms ?? 5000);
      const onExit = (code: number | null) => fail(`mosquitto_sub exited (${code})`);
      function fail(why: string) {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.kill('SIGKILL');
        reject(new Error(`${why}: ${args.join(' ')}\n${sub.output.join('')}`));
      }
      child.once('exit', onExit);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.startsWith('MSG\t')) {
          sub.output.push(`${line}\n`);
          if (line.startsWith('Subscribed (mid:')) {
            clearTimeout(timer);
            child.off('exit', onExit);
            resolve(sub);
          }
          return;
        }
        const [, topic = '', retain, qos, hex = '', correlation = '', ...props] = line.split('\t');
        const userProperties = parseUserProperties(props.join('\t'));
        sub.messages.push({
          topic,
          retain: retain === '1',
          qos: Number(qos),
          payload: Buffer.from(hex, 'hex'),
          correlation,
          userProperties,
          msgId: userProperties.find(([k]) => k === 'lb-msg-id')?.[1],
        });
      });
    });
  }

  /** Messages whose topic satisfies `pick`. */
  on(pick: (topic: string) => boolean): SubMessage[] {
    return this.messages.filter((m) => pick(m.topic));
  }

  async stop(): Promise<void> {
    await waitExit(this.child, 'SIGTERM');
  }
}

export interface PubResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `mosquitto_pub` once with `args` after the connection options; `input` goes to its stdin (with `-l`,
 * one message per line). Resolves when it exits, or kills it after `ms`.
 */
export function mosquittoPub(
  o: ClientOptions,
  args: string[],
  input?: string,
  ms = 10_000,
): Promise<PubResult> {
  return runClient(requireMosquitto().pub, o, args, input, ms);
}

/** Runs `mosquitto_sub` once (give it `-C`, `-W` or `-E` so it ends); resolves when it exits. */
export function mosquittoSubOnce(o: ClientOptions, args: string[], ms = 10_000): Promise<PubResult> {
  return runClient(requireMosquitto().sub, o, args, undefined, ms);
}

function runClient(
  bin: string,
  o: ClientOptions,
  args: string[],
  input: string | undefined,
  ms: number,
): Promise<PubResult> {
  const child = track(spawn(bin, [...clientArgs(o), ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin?.on('error', () => {}); // it may exit (refused) before reading its input
  child.stdin?.end(input ?? '');
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${ms} ms)`;
      child.kill('SIGKILL');
    }, ms);
    // 'close', not 'exit': after 'exit' its last output may still be in the pipes.
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-lived `mosquitto_pub -l`: every line written becomes one message, until `end()`. */
export function mosquittoPubStream(o: ClientOptions, args: string[]) {
  const { pub: bin } = requireMosquitto();
  const child = track(spawn(bin, [...clientArgs(o), '-l', ...args], { stdio: ['pipe', 'ignore', 'pipe'] }));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    write: (line: string) => child.stdin!.write(`${line}\n`),
    /** Closes stdin: it sends what is left, waits for the PUBACKs, and exits. */
    end: async (): Promise<PubResult> => {
      child.stdin!.end();
      return { code: await exit, stdout: '', stderr };
    },
    kill: () => waitExit(child, 'SIGKILL'),
  };
}

/** The agent's JSON log lines from its stdout (which startAgent leaves paused: this resumes and drains it). */
export function watchLog(child: ChildProcess) {
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<(line: Record<string, unknown>) => void>();
  const rl = createInterface({ input: child.stdout! });
  rl.on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    lines.push(line);
    for (const w of waiters) w(line);
  });
  child.stdout!.resume();
  return {
    lines,
    /** The next line (from now on) for which `pick` is true. */
    next(pick: (line: Record<string, unknown>) => boolean, ms = 10_000): Promise<Record<string, unknown>> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching agent log line within ${ms} ms`));
        }, ms);
        const waiter = (line: Record<string, unknown>) => {
          if (!pick(line)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(line);
        };
        waiters.add(waiter);
      });
    },
  };
}

/** Polls `check` every 20 ms; throws after `ms` naming `what`. */
export async function until(check: () => boolean, ms: number, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}
