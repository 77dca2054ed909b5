import type { Clock } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { Db } from './db.js';

/** Error codes (SQLite's and the file system's) that say the store cannot write, whatever is written. */
const STORAGE_CODES = new Set(['SQLITE_FULL', 'SQLITE_READONLY', 'ENOSPC', 'EDQUOT', 'EROFS', 'EIO']);
const STORAGE_PREFIXES = ['SQLITE_IOERR', 'SQLITE_READONLY_'];

/** The storage error somewhere in `err`'s cause chain (SQLITE_FULL, ENOSPC, an I/O error…), or undefined. */
export function storageFailure(err: unknown): (Error & { code: string }) | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (STORAGE_CODES.has(code) || STORAGE_PREFIXES.some((p) => code.startsWith(p)))
      return e as Error & { code: string };
  }
  return undefined;
}

export interface WriteHealthOptions {
  db: Db;
  logger: Logger;
  clock: Clock;
  /** While writes fail, a small write is tried this often, so readiness comes back without traffic. */
  probeMs?: number;
}

/**
 * Whether the store can write: writers report what happened (`succeeded`, `failed`); a storage failure
 * (full disk, I/O error) makes the store unwritable until a write succeeds again, a device's write or the
 * probe's. Readiness reads `state`.
 */
export class WriteHealth {
  private failure?: { code: string; message: string; since: number };
  private probe?: NodeJS.Timeout;
  private readonly probeWrite;

  constructor(private readonly o: WriteHealthOptions) {
    this.probeWrite = o.db.prepare(
      "INSERT INTO meta (key, value) VALUES ('store.probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    );
  }

  get writable(): boolean {
    return this.failure === undefined;
  }

  /** Undefined while writable; otherwise why not, and since when (epoch ms). */
  get state(): { code: string; message: string; since: number } | undefined {
    return this.failure;
  }

  succeeded(): void {
    if (!this.failure) return;
    this.o.logger.info(
      { code: this.failure.code, unwritableMs: this.o.clock.now() - this.failure.since },
      'store writable again',
    );
    this.failure = undefined;
    this.stopProbe();
  }

  /** Reports a failed write; returns whether it was a storage failure (other errors change nothing). */
  failed(err: unknown): boolean {
    const storage = storageFailure(err);
    if (!storage) return false;
    if (this.failure) return true;
    this.failure = { code: storage.code, message: errorMessage(storage), since: this.o.clock.now() };
    this.o.logger.error({ code: storage.code, err: errorMessage(storage) }, 'store cannot write; not ready');
    this.scheduleProbe();
    return true;
  }

  stop(): void {
    this.stopProbe();
  }

  private scheduleProbe(): void {
    this.probe = this.o.clock.setTimeout(() => this.runProbe(), this.o.probeMs ?? 1000);
    this.probe.unref?.();
  }

  private runProbe(): void {
    this.probe = undefined;
    if (!this.failure) return;
    try {
      this.probeWrite.run(String(this.o.clock.now()));
      this.succeeded();
    } catch (err) {
      if (!this.failed(err)) this.o.logger.debug({ err: errorMessage(err) }, 'store probe failed');
      this.scheduleProbe();
    }
  }

  private stopProbe(): void {
    if (this.probe) this.o.clock.clearTimeout(this.probe);
    this.probe = undefined;
  }
}
