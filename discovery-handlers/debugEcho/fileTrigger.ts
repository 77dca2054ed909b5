import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Clock } from '../../src/util/clock.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

/**
 * Wakes the discovery loop when a file may have changed: fs.watch on its directory (a file that is replaced
 * or created is seen too), debounced so an editor's burst of events costs one read, with `wait()` also
 * returning after the poll interval, a fallback for file systems without inotify.
 */
export class FileTrigger {
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private due = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly path: string,
    private readonly deps: { clock: Clock; logger: Logger; debounceMs: number },
  ) {}

  /** Watches the directory unless it already does; a directory that does not exist yet is left to polling. */
  ensureWatching(): void {
    if (this.watcher) return;
    const name = basename(this.path);
    try {
      const watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        if (file === null || file.toString() === name) this.fire();
      });
      watcher.on('error', (err) => {
        this.deps.logger.debug({ err: errorMessage(err) }, 'presence directory watch ended');
        this.stopWatching();
        this.fire();
      });
      this.watcher = watcher;
    } catch (err) {
      this.deps.logger.debug({ path: this.path, err: errorMessage(err) }, 'cannot watch; polling only');
    }
  }

  /** Resolves when a change is due, `intervalMs` passed, or the signal aborted. */
  wait(intervalMs: number, signal: AbortSignal): Promise<void> {
    if (this.due || signal.aborted) return this.consumed();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.deps.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve(this.consumed());
      };
      const timer = this.deps.clock.setTimeout(done, intervalMs);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  close(): void {
    this.stopWatching();
    if (this.debounce) this.deps.clock.clearTimeout(this.debounce);
    this.debounce = undefined;
    this.wake?.();
  }

  private fire(): void {
    if (this.debounce) return;
    this.debounce = this.deps.clock.setTimeout(() => {
      this.debounce = undefined;
      this.due = true;
      this.wake?.();
    }, this.deps.debounceMs);
  }

  private consumed(): Promise<void> {
    this.due = false;
    return Promise.resolve();
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
