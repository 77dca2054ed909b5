import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI, LAUNCHER, sleep } from './util.js';

export interface HostPort {
  host: string;
  port: number;
}

/** A bound on the agent's start, not a figure: on a 2-core machine loaded by other work it can take tens of seconds. */
const START_TIMEOUT_MS = 60_000;

/** `leafbridge agent --config FILE` as a real process, its JSON log lines read from stdout. */
export class AgentProcess {
  readonly child: ChildProcess;
  broker: HostPort = { host: '127.0.0.1', port: 0 };
  http: HostPort = { host: '127.0.0.1', port: 0 };
  /** The last log lines (stdout and stderr), for diagnostics. */
  readonly lines: string[] = [];
  /** Log lines by level name. */
  readonly levels: Record<string, number> = {};
  private readonly started: Promise<void>;

  /** `nodeArgs` go before the script, e.g. `--cpu-prof` (which Node 20 refuses in NODE_OPTIONS). */
  constructor(dir: string, config: Record<string, unknown>, nodeArgs: string[] = []) {
    // YAML is a superset of JSON.
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, JSON.stringify(config, null, 2));
    // Without Node flags, as users start it: the installed command (bin/leafbridge), which execs node with the
    // agent's heap flags.
    const [command, ...args] = nodeArgs.length
      ? [process.execPath, ...nodeArgs, CLI, 'agent', '--config', file]
      : [LAUNCHER, 'agent', '--config', file];
    this.child = spawn(command as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.started = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`agent did not start within ${START_TIMEOUT_MS / 1000} s\n${this.tail()}`)),
        START_TIMEOUT_MS,
      );
      this.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`agent exited (${code ?? signal}) before it started\n${this.tail()}`));
      });
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        this.keep(line);
        if (!line.startsWith('{')) return;
        let parsed: { msg?: string; level?: number; broker?: HostPort; http?: HostPort };
        try {
          parsed = JSON.parse(line);
        } catch {
          return;
        }
        const level = LEVELS[parsed.level ?? 0] ?? String(parsed.level);
        this.levels[level] = (this.levels[level] ?? 0) + 1;
        if (parsed.msg === 'agent started' && parsed.broker && parsed.http) {
          clearTimeout(timer);
          this.broker = parsed.broker;
          this.http = parsed.http;
          resolve();
        }
      });
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => this.keep(`stderr: ${line}`));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /**
   * The process that runs the agent: `node bin/leafbridge.js agent` without heap flags starts itself again with
   * them and stays as a thin parent (src/cli/runtime.ts), so this is the parent's child when there is one (the
   * installed command, bin/leafbridge, execs node with the flags: one process).
   */
  get workerPid(): number {
    try {
      const children = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'utf8').trim();
      return children ? Number(children.split(/\s+/)[0]) : this.pid;
    } catch {
      return this.pid;
    }
  }

  get brokerUrl(): string {
    return `mqtt://127.0.0.1:${this.broker.port}`;
  }

  start(): Promise<void> {
    return this.started;
  }

  /** One gauge or counter (without labels) from /metrics. */
  async metric(name: string): Promise<number | undefined> {
    const res = await fetch(`http://127.0.0.1:${this.http.port}/metrics`);
    const text = await res.text();
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  }

  /** Where the agent's memory is, from its own /metrics (prom-client default metrics), in MB. */
  async memoryBreakdown(): Promise<Record<string, number>> {
    const res = await fetch(`http://127.0.0.1:${this.http.port}/metrics`);
    const text = await res.text();
    const read = (pattern: string) => {
      const m = new RegExp(`^leafbridge_process_${pattern} (\\S+)$`, 'm').exec(text);
      return m ? Math.round((Number(m[1]) / 2 ** 20) * 10) / 10 : Number.NaN;
    };
    return {
      rss: read('process_resident_memory_bytes'),
      heapTotal: read('nodejs_heap_size_total_bytes'),
      heapUsed: read('nodejs_heap_size_used_bytes'),
      newSpace: read('nodejs_heap_space_size_total_bytes\\{space="new"\\}'),
      oldSpace: read('nodejs_heap_space_size_total_bytes\\{space="old"\\}'),
      largeObjectSpace: read('nodejs_heap_space_size_total_bytes\\{space="large_object"\\}'),
      external: read('nodejs_external_memory_bytes'),
    };
  }

  /** Polls a metric until `ok` holds; resolves with the time it did, or undefined after `timeoutMs`. */
  async waitForMetric(
    name: string,
    ok: (v: number) => boolean,
    timeoutMs: number,
    everyMs = 100,
  ): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const v = await this.metric(name);
      if (v !== undefined && ok(v)) return v;
      await sleep(everyMs);
    }
    return undefined;
  }

  /** SIGTERM (a clean stop, which also writes a --cpu-prof profile), SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<number | null> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
      child.kill('SIGTERM');
    });
  }

  /** Polls `memoryBreakdown` every `everyMs` and keeps the reading with the largest RSS; call the result to stop. */
  watchMemory(everyMs = 1000): () => Promise<Record<string, number> | undefined> {
    let peak: Record<string, number> | undefined;
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        try {
          const m = await this.memoryBreakdown();
          if (!peak || (m.rss ?? 0) > (peak.rss ?? 0)) peak = m;
        } catch {
          // the agent is going away
        }
        await sleep(everyMs);
      }
    })();
    return async () => {
      stopped = true;
      await loop;
      return peak;
    };
  }

  tail(n = 20): string {
    return this.lines.slice(-n).join('\n');
  }

  private keep(line: string): void {
    this.lines.push(line);
    if (this.lines.length > 200) this.lines.shift();
  }
}

const LEVELS: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};
