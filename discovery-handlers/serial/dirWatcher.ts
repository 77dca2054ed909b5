import { existsSync, type FSWatcher, watch } from 'node:fs';
import { dirname } from 'node:path';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

/**
 * Watches a set of directories (inotify through fs.watch) and calls `onChange` on any entry created, removed
 * or renamed in them. A directory that does not exist yet is stood in for by its nearest existing parent,
 * so /dev/serial/by-id is picked up when udev creates it.
 */
export class DirWatcher {
  private readonly watchers = new Map<string, FSWatcher>();

  constructor(
    private readonly onChange: () => void,
    private readonly logger: Logger,
  ) {}

  /** Watch exactly these directories (or their nearest existing parents) from now on. */
  update(dirs: readonly string[]): void {
    const wanted = new Set(dirs.map(nearestExisting).filter((d): d is string => d !== undefined));
    for (const [dir, watcher] of this.watchers) {
      if (!wanted.has(dir)) this.drop(dir, watcher);
    }
    for (const dir of wanted) if (!this.watchers.has(dir)) this.add(dir);
  }

  close(): void {
    for (const [dir, watcher] of this.watchers) this.drop(dir, watcher);
  }

  get watched(): string[] {
    return [...this.watchers.keys()].sort();
  }

  private add(dir: string): void {
    try {
      const watcher = watch(dir, { persistent: false }, () => this.onChange());
      // A watched directory that is removed ends its watcher; the next update re-adds what still exists.
      watcher.on('error', (err) => {
        this.logger.debug({ dir, err: errorMessage(err) }, 'directory watch ended');
        this.drop(dir, watcher);
        this.onChange();
      });
      this.watchers.set(dir, watcher);
    } catch (err) {
      this.logger.debug(
        { dir, err: errorMessage(err) },
        'cannot watch directory; the periodic rescan covers it',
      );
    }
  }

  private drop(dir: string, watcher: FSWatcher): void {
    watcher.close();
    if (this.watchers.get(dir) === watcher) this.watchers.delete(dir);
  }
}

function nearestExisting(dir: string): string | undefined {
  let current = dir;
  while (!existsSync(current)) {
    const parent = dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
  return current;
}
