import { readFileSync, statSync } from 'node:fs';
import { ConfigError, errorMessage } from './errors.js';
import type { Logger } from './logger.js';

/** How often, at most, a file is looked at again (one stat call) when its contents are asked for. */
const RECHECK_MS = 1000;

export interface ReloadedFileOptions<T> {
  file: string;
  /** The config key that names the file, for errors (`auth.credentialsFile`). */
  key: string;
  /** What the file holds, for log lines (`credentials file`). */
  what: string;
  /** The contents, or a ConfigError naming every problem. */
  parse: (text: string) => T;
  /** Counts for the reload log line. */
  summary: (value: T) => Record<string, unknown>;
  logger: Logger;
  now?: () => number;
}

/**
 * A file read at start and again, on demand, when its modification time changes, checked at most once a
 * second. A version that cannot be read or parsed keeps the last good contents and is logged once, at
 * error; nothing already accepted is dropped because of it.
 */
export class ReloadedFile<T> {
  private mtimeMs = -1;
  private checkedAt = 0;
  private failedVersion: number | undefined;
  private contents: T | undefined;
  /** Counts the versions read, so a reader knows when to rebuild what it derived from them. */
  version = 0;

  constructor(private readonly o: ReloadedFileOptions<T>) {}

  /** Reads the file; throws ConfigError when it cannot be read or is not valid. */
  load(): void {
    const { file, key } = this.o;
    let text: string;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(file).mtimeMs;
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`${key}: cannot read ${file}: ${errorMessage(err)}`]);
    }
    this.contents = this.o.parse(text);
    this.mtimeMs = mtimeMs;
    this.checkedAt = this.now();
    this.version++;
  }

  /** The contents, read again first if the file changed; throws if it was never loaded. */
  current(): T {
    this.refresh();
    if (this.contents === undefined) throw new Error(`${this.o.file}: read before load()`);
    return this.contents;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private refresh(): void {
    const now = this.now();
    if (now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    const { file, what, logger } = this.o;
    let mtimeMs: number | undefined;
    try {
      mtimeMs = statSync(file).mtimeMs;
      if (mtimeMs === this.mtimeMs) return;
      this.load();
      this.failedVersion = undefined;
      logger.info({ file, ...this.o.summary(this.contents as T) }, `${what} reloaded`);
    } catch (err) {
      // Logged once per version of the bad file (or once while it is missing).
      const version = mtimeMs ?? -1;
      if (version !== this.failedVersion) {
        const why = err instanceof ConfigError ? err.problems.join('; ') : errorMessage(err);
        logger.error({ file, err: why }, `${what} not reloaded; the last good one stays`);
      }
      this.failedVersion = version;
    }
  }
}
