import { link, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { JpegFrame } from './jpeg.js';

export interface StoredFrame extends JpegFrame {
  /** 1 for the first frame since the broker started. */
  number: number;
  at: Date;
}

const fileName = (n: number) => `frame-${String(n).padStart(6, '0')}.jpg`;

/**
 * The latest frame, in memory for the HTTP server and, with a directory, on disk: `frame-NNNNNN.jpg` (the
 * last `keep` of them) and `latest.jpg`. Files are written whole and renamed into place, so a reader never
 * sees half an image; writes run one at a time, and of the frames that arrive meanwhile only the newest is
 * written next.
 */
export class FrameStore {
  latest: StoredFrame | undefined;
  count = 0;
  private writing = false;
  /** The newest frame not written yet: frames that arrive faster than the disk takes them are skipped. */
  private next: StoredFrame | undefined;
  private written: number[] = [];

  constructor(
    private readonly dir: string | undefined,
    private readonly keep: number,
    private readonly logger: Logger,
  ) {}

  async open(): Promise<void> {
    if (this.dir) await mkdir(this.dir, { recursive: true });
  }

  add(frame: JpegFrame): StoredFrame {
    this.count += 1;
    const stored: StoredFrame = { ...frame, number: this.count, at: new Date() };
    this.latest = stored;
    if (this.dir) {
      this.next = stored;
      if (!this.writing) void this.drain(this.dir);
    }
    return stored;
  }

  private async drain(dir: string): Promise<void> {
    this.writing = true;
    while (this.next) {
      const frame = this.next;
      this.next = undefined;
      await this.write(dir, frame).catch((err: Error) =>
        this.logger.error({ err: err.message, dir }, 'frame not written'),
      );
    }
    this.writing = false;
  }

  private async write(dir: string, frame: StoredFrame): Promise<void> {
    const tmp = join(dir, '.incoming.jpg');
    const numbered = join(dir, fileName(frame.number));
    await rm(tmp, { force: true });
    await writeFile(tmp, frame.data);
    await rename(tmp, numbered);
    // latest.jpg: a second name for the same file, swapped in atomically.
    await link(numbered, tmp);
    await rename(tmp, join(dir, 'latest.jpg'));
    this.written.push(frame.number);
    for (const old of this.written.splice(0, Math.max(0, this.written.length - this.keep))) {
      await rm(join(dir, fileName(old)), { force: true });
    }
  }
}
