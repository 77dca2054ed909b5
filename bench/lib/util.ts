import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, freemem, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

/** The repository root (this file runs from dist/bench/lib/). */
export const ROOT = resolve(import.meta.dirname, '../../..');
export const CLI = join(ROOT, 'bin/leafbridge.js');
/** The installed `leafbridge` command (package.json `bin`): a sh launcher that execs node on CLI. */
export const LAUNCHER = join(ROOT, 'bin/leafbridge');
export const RESULTS_DIR = join(ROOT, 'bench/results');

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

/** CLOCK_MONOTONIC in microseconds: the clock V8's CPU profiles use for their timestamps. */
export function monotonicMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a broker that must come up on a known port). */
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

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  node: string;
  platform: string;
  kernel: string;
  totalMemMB: number;
  freeMemMB: number;
  loadavg: number[];
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: release(),
    totalMemMB: Math.round(totalmem() / 2 ** 20),
    freeMemMB: Math.round(freemem() / 2 ** 20),
    loadavg: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export interface MemoryReading {
  rssMB: number;
  hwmMB: number;
  /** VmRSS split: anonymous memory (heaps), file mappings (code, mmapped files), shared memory. */
  anonMB: number;
  fileMB: number;
  shmemMB: number;
}

/** VmRSS and VmHWM of a process from /proc/<pid>/status; undefined once it is gone. */
export function readMemory(pid: number): MemoryReading | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  return {
    rssMB: round1(kb('VmRSS') / 1024),
    hwmMB: round1(kb('VmHWM') / 1024),
    anonMB: round1(kb('RssAnon') / 1024),
    fileMB: round1(kb('RssFile') / 1024),
    shmemMB: round1(kb('RssShmem') / 1024),
  };
}

/** Samples a process's VmRSS at an interval and keeps the peak. */
export class RssSampler {
  private timer?: NodeJS.Timeout;
  peakMB = 0;
  atPeak?: MemoryReading;
  samples = 0;

  constructor(
    private readonly pid: number,
    private readonly everyMs = 100,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    return this;
  }

  stop(): { peakRssMB: number; atPeak: MemoryReading | undefined; samples: number } {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    return { peakRssMB: this.peakMB, atPeak: this.atPeak, samples: this.samples };
  }

  private sample(): void {
    const m = readMemory(this.pid);
    if (!m) return;
    this.samples++;
    if (m.rssMB > this.peakMB) {
      this.peakMB = m.rssMB;
      this.atPeak = m;
    }
  }
}

export function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

export function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** Messages a bench child sends over IPC: always an object with an `ev`. */
export interface ChildEvent {
  ev: string;
  [key: string]: unknown;
}

/**
 * A bench helper process (dist/bench/lib/*.js) forked with an IPC channel. Events are buffered, so one that
 * arrives before `next` is called is not lost.
 */
export class BenchChild {
  private readonly events: ChildEvent[] = [];
  private waiter?: { ev: string; resolve: (e: ChildEvent) => void; reject: (err: Error) => void };
  private exited?: string;
  readonly child: ChildProcess;

  constructor(
    readonly name: string,
    script: string,
    args: string[] = [],
  ) {
    this.child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    this.child.on('message', (m) => {
      const e = m as ChildEvent;
      if (e.ev === 'fatal') {
        this.fail(`${name}: ${String(e.error)}`);
        return;
      }
      if (this.waiter && this.waiter.ev === e.ev) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(e);
      } else {
        this.events.push(e);
      }
    });
    this.child.on('exit', (code, signal) => this.fail(`${name} exited (${code ?? signal})`));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  send(msg: Record<string, unknown>): void {
    if (this.exited) throw new Error(this.exited);
    this.child.send(msg);
  }

  /** The next event named `ev` (buffered or future); rejects after `timeoutMs` or if the child dies. */
  next(ev: string, timeoutMs: number): Promise<ChildEvent> {
    const i = this.events.findIndex((e) => e.ev === ev);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0] as ChildEvent);
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`${this.name}: no '${ev}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        ev,
        resolve: (e) => {
          clearTimeout(timer);
          resolvePromise(e);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  async request(msg: Record<string, unknown>, ev: string, timeoutMs: number): Promise<ChildEvent> {
    const reply = this.next(ev, timeoutMs);
    this.send(msg);
    return reply;
  }

  /** Ask it to close; SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      if (child.connected) child.send({ cmd: 'close' });
    } catch {
      // already going
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  private fail(reason: string): void {
    this.exited ??= reason;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(new Error(reason));
  }
}

/** Child side: report a fatal error to the parent, then exit. */
export function childFatal(err: unknown): void {
  const error = err instanceof Error ? err.message : String(err);
  try {
    process.send?.({ ev: 'fatal', error });
  } catch {
    // parent gone
  }
  setTimeout(() => process.exit(1), 50);
}

/** Child side: exit when the parent goes away, so no helper outlives a crashed bench. */
export function exitWithParent(): void {
  process.on('disconnect', () => process.exit(0));
}

/** utime + stime of a process from /proc/<pid>/stat, in clock ticks (USER_HZ, 100 a second); undefined once it is gone. */
export function procTicks(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function machineBusyTicks(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return total - (v[3] ?? 0) - (v[4] ?? 0);
}

export interface CpuSplit {
  seconds: number;
  /** CPU used over the interval, in cores (1 = one core busy all the time), per process of the bench. */
  cores: Record<string, number>;
  /** The whole machine, and what processes outside the bench used (other work on the machine: noise). */
  machineCores: number;
  otherProcessesCores: number;
}

/** CPU used by named processes (and everything else on the machine) between start and stop. */
export class CpuMeter {
  private readonly start: { at: number; ticks: Map<string, number>; machine: number; self: NodeJS.CpuUsage };
  private readonly hz = 100; // USER_HZ on Linux

  constructor(private readonly pids: Record<string, number>) {
    this.start = {
      at: performance.now(),
      ticks: new Map(Object.entries(pids).map(([name, pid]) => [name, procTicks(pid) ?? 0])),
      machine: machineBusyTicks(),
      self: process.cpuUsage(),
    };
  }

  stop(): CpuSplit {
    const seconds = (performance.now() - this.start.at) / 1000;
    const cores: Record<string, number> = {};
    let ours = 0;
    for (const [name, pid] of Object.entries(this.pids)) {
      const used =
        ((procTicks(pid) ?? this.start.ticks.get(name) ?? 0) - (this.start.ticks.get(name) ?? 0)) / this.hz;
      cores[name] = round3(used / seconds);
      ours += used;
    }
    const self = process.cpuUsage(this.start.self);
    const selfS = (self.user + self.system) / 1e6;
    cores.bench = round3(selfS / seconds);
    ours += selfS;
    const machine = (machineBusyTicks() - this.start.machine) / this.hz;
    return {
      seconds: round3(seconds),
      cores,
      machineCores: round3(machine / seconds),
      otherProcessesCores: round3(Math.max(0, machine - ours) / seconds),
    };
  }
}

/** A helper script in bench/lib/, as the built file next to this module. */
export const lib = (name: string) => join(import.meta.dirname, name);

/** Everything a phase started, stopped in reverse order whatever happens. */
export class Scope {
  private readonly closers: (() => Promise<unknown> | unknown)[] = [];
  add<T>(thing: T, close: (t: T) => Promise<unknown> | unknown): T {
    this.closers.push(() => close(thing));
    return thing;
  }
  async close(): Promise<void> {
    for (const c of this.closers.splice(0).reverse()) {
      try {
        await c();
      } catch {
        // keep closing the rest
      }
    }
  }
}
