// Watching an agent's Device objects from outside, two ways:
//   DeviceLog   the agent's own log lines about Devices ('device found', 'device back online', 'device offline',
//               'device removed after its grace period'), each stamped by the agent (pino `time`, epoch ms) at
//               the moment its registry changed: exact to the ms, and free (the agent logs them anyway).
//   DevicesApi  GET /api/v1/devices polled at an interval: what a client sees, late by up to one interval.
import { createInterface } from 'node:readline';
import type { DeviceObject } from '../../src/model/resources.js';
import type { AgentProcess } from './agent.js';
import { now, sleep } from './util.js';

export const DeviceMsg = {
  found: 'device found',
  backOnline: 'device back online',
  offline: 'device offline',
  removed: 'device removed after its grace period',
} as const;
export type DeviceMsg = (typeof DeviceMsg)[keyof typeof DeviceMsg];

const MESSAGES = new Set<string>(Object.values(DeviceMsg));

export interface DeviceLogEvent {
  msg: DeviceMsg;
  /** The Device's metadata.name. */
  device: string;
  /** The handler's device id ('device found' and 'device back online' only). */
  id?: string;
  /** The agent's timestamp (epoch ms, the clock `now()` reads in every process on this machine). */
  time: number;
  /** When the bench read the line (epoch ms). */
  readAt: number;
}

/** The agent's Device log lines, read from its stdout as they come (attach right after the agent is spawned). */
export class DeviceLog {
  readonly events: DeviceLogEvent[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(agent: AgentProcess) {
    const stdout = agent.child.stdout;
    if (!stdout) throw new Error('agent stdout is not piped');
    createInterface({ input: stdout }).on('line', (line) => this.onLine(line));
  }

  /** Where the next event will go: pass it to `next` to see only what happens from now on. */
  mark(): number {
    return this.events.length;
  }

  /** The first event at index ≥ `from` that `ok` accepts, waiting up to `timeoutMs` for it. */
  async next(
    from: number,
    ok: (e: DeviceLogEvent) => boolean,
    timeoutMs: number,
  ): Promise<DeviceLogEvent | undefined> {
    const deadline = now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(from).find(ok);
      if (hit) return hit;
      const left = deadline - now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const waiters = this.waiters;
        const timer = setTimeout(wake, left);
        function wake() {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve();
        }
        waiters.add(wake);
      });
    }
  }

  /** Waits (up to `timeoutMs`) until `done()` holds, checking it as each event comes; resolves whether it does. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    return (await this.next(this.events.length, done, timeoutMs)) !== undefined || done();
  }

  /** Every event at index ≥ `from` that `ok` accepts. */
  since(from: number, ok: (e: DeviceLogEvent) => boolean): DeviceLogEvent[] {
    return this.events.slice(from).filter(ok);
  }

  private onLine(line: string): void {
    if (!line.startsWith('{') || !line.includes('"device')) return;
    let parsed: { msg?: string; device?: string; id?: string; time?: number };
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    if (!parsed.msg || !MESSAGES.has(parsed.msg) || typeof parsed.device !== 'string') return;
    this.events.push({
      msg: parsed.msg as DeviceMsg,
      device: parsed.device,
      ...(typeof parsed.id === 'string' ? { id: parsed.id } : {}),
      time: typeof parsed.time === 'number' ? parsed.time : now(),
      readAt: now(),
    });
    for (const wake of [...this.waiters]) wake();
  }
}

/** An online transition (found or back online). */
export function isOnline(e: DeviceLogEvent): boolean {
  return e.msg === DeviceMsg.found || e.msg === DeviceMsg.backOnline;
}

export interface PollHit {
  /** When the answer that satisfied the condition arrived (epoch ms). */
  at: number;
  items: DeviceObject[];
}

/** `GET /api/v1/devices` on one agent, polled. */
export class DevicesApi {
  polls = 0;
  failures = 0;
  private busyMs = 0;

  constructor(readonly base: string) {}

  async list(): Promise<DeviceObject[]> {
    const t = now();
    try {
      const res = await fetch(`${this.base}/api/v1/devices`, { signal: AbortSignal.timeout(2_000) });
      return ((await res.json()) as { items: DeviceObject[] }).items;
    } finally {
      this.polls++;
      this.busyMs += now() - t;
    }
  }

  /** Mean time one GET took, ms. */
  get meanRequestMs(): number {
    return this.polls > 0 ? this.busyMs / this.polls : Number.NaN;
  }

  /**
   * Polls every `everyMs` (measured from one request's start to the next) until `ok` holds; resolves with the
   * time that answer arrived, or undefined after `timeoutMs`. A failed request counts and polling goes on.
   */
  async until(
    ok: (items: DeviceObject[]) => boolean,
    timeoutMs: number,
    everyMs: number,
  ): Promise<PollHit | undefined> {
    const deadline = now() + timeoutMs;
    while (now() < deadline) {
      const started = now();
      try {
        const items = await this.list();
        const at = now();
        if (ok(items)) return { at, items };
      } catch {
        this.failures++;
      }
      await sleep(Math.max(0, everyMs - (now() - started)));
    }
    return undefined;
  }
}

export interface LatencyStats {
  /** Rounds measured (timed-out ones included). */
  n: number;
  /** Rounds where the event never came within the bound (counted as +Infinity in the percentiles). */
  timedOut: number;
  min?: number;
  p50?: number;
  p90?: number;
  p99?: number;
  max?: number;
  mean?: number;
}

/** Percentiles over samples in ms; `undefined` samples are time-outs and count as +Infinity. */
export function latencyStats(samples: readonly (number | undefined)[]): LatencyStats {
  const values = samples.map((s) => (s === undefined ? Number.POSITIVE_INFINITY : s));
  const finite = values.filter((x) => Number.isFinite(x));
  const pick = (p: number) => {
    const sorted = [...values].sort((a, b) => a - b);
    if (sorted.length === 0) return undefined;
    const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
    const x = sorted[Math.min(rank, sorted.length) - 1] as number;
    return round1(x);
  };
  return {
    n: values.length,
    timedOut: values.length - finite.length,
    ...(finite.length > 0
      ? { min: round1(Math.min(...finite)), mean: round1(finite.reduce((a, b) => a + b, 0) / finite.length) }
      : {}),
    ...(values.length > 0
      ? { p50: pick(50), p90: pick(90), p99: pick(99), max: round1(Math.max(...values)) }
      : {}),
  };
}

function round1(n: number): number {
  return Number.isFinite(n) ? Math.round(n * 10) / 10 : n;
}
