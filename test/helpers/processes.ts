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

/** Resolves with the first stdout JSON line for which `pick` returns a value; rejects on exit or timeout. */
export function waitForLine<T>(
  child: ChildProcess,
  pick: (line: Record<string, unknown>) => T | undefined,
  ms = 15_000,
): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(new Error(`no expected line within ${ms} ms`)), ms);
    const onExit = (code: number | null) =>
      fail(new Error(`process exited (${code}) before the expected line`));
    function done() {
      clearTimeout(timer);
      rl.close(); // (this pauses the stream; keep it flowing so the process never blocks on a full pipe)
      child.stdout?.resume();
      child.off('exit', onExit);
    }
    function fail(err: Error) {
      done();
      reject(err);
    }
    rl.on('line', (line) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const value = pick(parsed);
      if (value !== undefined) {
        done();
        resolvePromise(value);
      }
    });
    child.once('exit', onExit);
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
 * `wrap` prefixes the command line (e.g. `unshare` for a mount of the agent's own).
 */
export async function startAgent(
  dir: string,
  config: Record<string, unknown>,
  options: { wrap?: (argv: string[]) => string[] } = {},
): Promise<AgentProcess> {
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, stringify(config));
  const argv = [process.execPath, CLI, 'agent', '--config', file];
  const [command, ...args] = options.wrap ? options.wrap(argv) : argv;
  const child = spawn(command as string, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LEAFBRIDGE_LOG_LEVEL: 'info' },
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
