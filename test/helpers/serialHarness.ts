import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import type { DiscoveredDevice, DiscoveryHandler } from '../../src/model/handler.js';
import { systemClock } from '../../src/util/clock.js';
import { createLogger, type Logger, silentLogger } from '../../src/util/logger.js';

/** Silent unless LEAFBRIDGE_LOG_LEVEL is set (e.g. `debug` to see every probe). */
export function serialTestLogger(): Logger {
  return process.env.LEAFBRIDGE_LOG_LEVEL ? createLogger({ destination: process.stderr }) : silentLogger();
}

export async function makeSerialTempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lb-serial-'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

interface Snapshot {
  devices: DiscoveredDevice[];
  at: number;
}

/** Runs a handler's `discover` in the background and keeps every list it yields, with the time. */
export class DiscoveryRun<S extends DiscoveryHandler> {
  readonly snapshots: Snapshot[] = [];
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;
  private readonly waiters = new Set<() => void>();
  error: unknown;

  /**
   * `probeWritePaths`: as the agent's discovery.probeWritePaths; the stubs are pseudo-terminals. `node`: the node
   * name the agent hands its handlers.
   */
  constructor(
    handler: S,
    details: Parameters<S['discover']>[0],
    logger: Logger = serialTestLogger(),
    probeWritePaths: readonly string[] = ['/dev/pts/'],
    node?: string,
  ) {
    const ctx = {
      logger,
      clock: systemClock,
      signal: this.abort.signal,
      probeWritePaths,
      ...(node === undefined ? {} : { node }),
    };
    this.loop = this.consume(handler.discover(details, ctx));
  }

  get latest(): DiscoveredDevice[] | undefined {
    return this.snapshots.at(-1)?.devices;
  }

  /** Resolves with the first snapshot (already seen or yet to come) that satisfies `test`. */
  async waitFor(test: (devices: DiscoveredDevice[]) => boolean, timeoutMs: number): Promise<Snapshot> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.snapshots.findLast((s) => test(s.devices));
      if (hit && hit === this.snapshots.at(-1)) return hit;
      const left = deadline - Date.now();
      if (left <= 0 || this.error) {
        throw new Error(
          `no matching device list within ${timeoutMs} ms; last: ${JSON.stringify(this.latest)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async consume(lists: AsyncIterable<DiscoveredDevice[]>): Promise<void> {
    try {
      for await (const devices of lists) {
        this.snapshots.push({ devices, at: Date.now() });
        this.wakeAll();
      }
    } catch (err) {
      this.error = err;
      this.wakeAll();
    }
  }

  private wakeAll(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }
}

export function byPath(path: string): (devices: DiscoveredDevice[]) => boolean {
  return (devices) => devices.some((d) => d.properties.SERIAL_DEVICE_PATH === path);
}

/** Opens a serial path, writes `text`, and resolves with what arrives until `until` matches or the timeout. */
export async function converse(
  path: string,
  text: string,
  until: RegExp,
  timeoutMs = 1_500,
): Promise<string> {
  const port = new SerialPort({ path, baudRate: 9600, hupcl: false, autoOpen: false });
  port.on('error', () => {});
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  let received = '';
  try {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      port.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1');
        if (until.test(received)) {
          clearTimeout(t);
          resolve();
        }
      });
      if (text) port.write(text);
    });
  } finally {
    await new Promise<void>((resolve) => port.close(() => resolve()));
  }
  return received;
}
