import { SerialPort } from 'serialport';
import type { Clock } from '../../src/util/clock.js';
import { errorMessage } from '../../src/util/errors.js';
import type { LinearRegex } from '../../src/util/linearRegex.js';
import { collectState, ReplyCollector } from './replyCollector.js';

export interface ProbeRequest {
  path: string;
  write: Buffer;
  expect: LinearRegex;
  timeoutMs: number;
  baudRate: number;
  maxBytes: number;
}

export const probeFailure = {
  timeout: 'timeout',
  overflow: 'overflow',
  error: 'error',
  aborted: 'aborted',
} as const;
export type ProbeFailure = (typeof probeFailure)[keyof typeof probeFailure];

export type ProbeResult =
  | { ok: true; reply: string; bytes: number; elapsedMs: number }
  | { ok: false; reason: ProbeFailure; detail: string; bytes: number; elapsedMs: number };

type Outcome = { ok: true } | { ok: false; reason: ProbeFailure; detail: string };

export interface ProbeContext {
  clock: Clock;
  signal: AbortSignal;
}

/** After a match mid-line, how long to wait for the rest of the line. */
const lineGraceMs = 100;
const closeTimeoutMs = 1_000;

/**
 * Opens the port (HUPCL off, DTR untouched), discards stale input, writes the probe and reads until the
 * reply matches, `maxBytes` arrive, the timeout passes, the port fails or vanishes, or `signal` aborts.
 * Always closes the port and never throws.
 */
export async function probePort(request: ProbeRequest, ctx: ProbeContext): Promise<ProbeResult> {
  const started = ctx.clock.now();
  const collector = new ReplyCollector(request.maxBytes, request.expect);
  const port = new SerialPort({
    path: request.path,
    baudRate: request.baudRate,
    hupcl: false,
    autoOpen: false,
  });
  const outcome = await exchange(port, request, collector, ctx);
  await closeQuietly(port, ctx.clock);
  const base = { bytes: collector.bytes, elapsedMs: ctx.clock.now() - started };
  return outcome.ok ? { ok: true, reply: collector.reply(), ...base } : { ...outcome, ...base };
}

function exchange(
  port: SerialPort,
  request: ProbeRequest,
  collector: ReplyCollector,
  ctx: ProbeContext,
): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const timers: NodeJS.Timeout[] = [];
    let done = false;
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      for (const t of timers) ctx.clock.clearTimeout(t);
      ctx.signal.removeEventListener('abort', onAbort);
      port.removeAllListeners('data');
      resolve(outcome);
    };
    const fail = (reason: ProbeFailure, detail: string) => finish({ ok: false, reason, detail });
    const onAbort = () => fail(probeFailure.aborted, 'discovery stopped');
    if (ctx.signal.aborted) return onAbort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    timers.push(ctx.clock.setTimeout(() => onTimeout(collector, finish), request.timeoutMs));
    port.on('error', (err) => fail(probeFailure.error, errorMessage(err)));
    port.on('close', () => fail(probeFailure.error, 'port closed during the probe'));
    port.on('data', (chunk: Buffer) => {
      const state = collector.push(chunk);
      if (state === collectState.matched) finish({ ok: true });
      else if (state === collectState.overflow)
        fail(probeFailure.overflow, `no match in ${collector.bytes} bytes`);
      else if (state === collectState.partial && timers.length < 2) {
        timers.push(ctx.clock.setTimeout(() => finish({ ok: true }), lineGraceMs));
      }
    });
    openAndWrite(
      port,
      request.write,
      () => done,
      (err) => fail(probeFailure.error, errorMessage(err)),
    );
  });
}

function onTimeout(collector: ReplyCollector, finish: (o: Outcome) => void): void {
  if (collector.matched) finish({ ok: true });
  else finish({ ok: false, reason: probeFailure.timeout, detail: `no match in ${collector.bytes} bytes` });
}

function openAndWrite(
  port: SerialPort,
  bytes: Buffer,
  isDone: () => boolean,
  onError: (err: Error) => void,
): void {
  port.open((openErr) => {
    if (openErr) return onError(openErr);
    if (isDone()) return;
    // Stale input (readings queued while nobody listened) would only confuse the match.
    port.flush(() => {
      if (!isDone()) port.write(bytes, (err) => err && onError(err));
    });
  });
}

/** Closes the port if it is (or becomes) open; bounded in time so a wedged port cannot stall a scan. */
async function closeQuietly(port: SerialPort, clock: Clock): Promise<void> {
  port.removeAllListeners('close');
  port.on('error', () => {});
  if (!port.isOpen) {
    // An open still in flight closes itself when it completes.
    port.once('open', () => port.close(() => {}));
    return;
  }
  await new Promise<void>((resolve) => {
    const timer = clock.setTimeout(resolve, closeTimeoutMs);
    port.close(() => {
      clock.clearTimeout(timer);
      resolve();
    });
  });
}
