import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';

/** The repository root: the nearest folder up with a package.json (this file also runs built, from dist/test/helpers). */
export const ROOT = repositoryRoot(resolve(import.meta.dirname, '../..'));

function repositoryRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return from;
  }
}
export const CLI = join(ROOT, 'bin/leafbridge.js');

export function tempDir(prefix = 'lb-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/**
 * A child's stdout as JSON lines, read once for its whole life: lines that came in one chunk are all kept, so
 * waiting for one line and then another never loses the second.
 */
class LineFeed {
  /** Lines not yet taken by a waiter, oldest first. */
  private readonly unread: Record<string, unknown>[] = [];
  private readonly waiters = new Set<() => void>();
  exited = false;

  constructor(child: ChildProcess) {
    this.exited = child.exitCode !== null || child.signalCode !== null;
    const rl = createInterface({ input: child.stdout! });
    rl.on('line', (line) => {
      try {
        this.unread.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        return;
      }
      for (const w of this.waiters) w();
    });
    child.once('exit', () => {
      this.exited = true;
      for (const w of this.waiters) w();
    });
  }

  /** Takes the lines up to and including the first for which `pick` returns a value, and returns that value. */
  take<T>(pick: (line: Record<string, unknown>) => T | undefined): T | undefined {
    for (let i = 0; i < this.unread.length; i++) {
      const value = pick(this.unread[i] as Record<string, unknown>);
      if (value !== undefined) {
        this.unread.splice(0, i + 1);
        return value;
      }
    }
    this.unread.length = 0; // read and not wanted, as a reader of the stream would have passed them by
    return undefined;
  }

  onChange(listener: () => void): () => void {
    this.waiters.add(listener);
    return () => this.waiters.delete(listener);
  }
}

const feeds = new WeakMap<ChildProcess, LineFeed>();

/**
 * Resolves with the first stdout JSON line, among those not taken by an earlier call for this child, for which
 * `pick` returns a value; rejects on exit or timeout.
 */
export function waitForLine<T>(
  child: ChildProcess,
  pick: (line: Record<string, unknown>) => T | undefined,
  ms = 15_000,
): Promise<T> {
  let feed = feeds.get(child);
  if (!feed) {
    feed = new LineFeed(child);
    feeds.set(child, feed);
  }
  const lines = feed;
  return new Promise((resolvePromise, reject) => {
    const check = () => {
      const value = lines.take(pick);
      if (value !== undefined) {
        stop();
        resolvePromise(value);
      } else if (lines.exited) {
        stop();
        reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) before the expected line`));
      }
    };
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no expected line within ${ms} ms`));
    }, ms);
    const unsubscribe = lines.onChange(check);
    function stop() {
      clearTimeout(timer);
      unsubscribe();
    }
    check();
  });
}

/** An upstream MQTT broker in its own process (aedes), which can be stopped and started on the same port. */
export class UpstreamBroker {
  private child?: ChildProcess;
  port = 0;

  /** With `journal`, the broker appends every PUBLISH it accepts to that file before acknowledging it. */
  constructor(private readonly journal?: string) {}

  async start(port = this.port): Promise<number> {
    const args = [
      join(ROOT, 'test/helpers/aedesServer.mjs'),
      String(port),
      ...(this.journal ? [this.journal] : []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.child = child;
    this.port = await waitForLine(child, (l) => (typeof l.port === 'number' ? l.port : undefined));
    return this.port;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** SIGKILL: the broker vanishes mid-stream, as in a crash. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((r) => {
      child.once('exit', () => r());
      child.kill(signal);
    });
  }
}

export interface AgentProcess {
  child: ChildProcess;
  broker: { host: string; port: number };
  http: { host: string; port: number };
  stderr: string[];
  /** Everything the agent logged on stdout so far. */
  stdout: string[];
}

/**
 * Writes `config` as YAML into `dir` and starts `leafbridge agent` on it; resolves once it is listening.
 * `wrap` prefixes the command line (e.g. `unshare` for a mount of the agent's own); `env` replaces the
 * environment the agent inherits from the tests.
 */
export async function startAgent(
  dir: string,
  config: Record<string, unknown>,
  options: { wrap?: (argv: string[]) => string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<AgentProcess> {
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, stringify(config));
  const argv = [process.execPath, CLI, 'agent', '--config', file];
  const [command, ...args] = options.wrap ? options.wrap(argv) : argv;
  const child = spawn(command as string, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...(options.env ?? process.env), LEAFBRIDGE_LOG_LEVEL: 'info' },
  });
  const stderr: string[] = [];
  const stdout: string[] = [];
  child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
  child.stdout?.on('data', (d: Buffer) => stdout.push(d.toString()));
  const addresses = await waitForLine(child, (l) =>
    l.msg === 'agent started' ? (l as unknown as Pick<AgentProcess, 'broker' | 'http'>) : undefined,
  );
  return { child, broker: addresses.broker, http: addresses.http, stderr, stdout };
}

export async function stopProcess(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  return new Promise((r) => {
    child.once('exit', (code) => r(code));
    child.kill(signal);
  });
}

/** A free TCP port on 127.0.0.1 (for a process that must come back on the same port). */
export function freePort(): Promise<number> {
  return new Promise((r, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => r(port));
    });
  });
}
