import type { LinearRegex, MatchSpan } from '../../src/util/linearRegex.js';
import { printableBytes } from './escapes.js';

/** What one more chunk of reply did: matched with its line complete, matched mid-line, overflowed, or nothing. */
export const collectState = {
  matched: 'matched',
  partial: 'partial',
  overflow: 'overflow',
  waiting: 'waiting',
} as const;
export type CollectState = (typeof collectState)[keyof typeof collectState];

/**
 * Collects a probe reply into a fixed buffer of `maxBytes` (never more, whatever the port sends) and tests
 * the expected pattern against it as Latin-1 text, so any byte sequence is safe to match.
 */
export class ReplyCollector {
  private readonly buffer: Buffer;
  private length = 0;
  private match: MatchSpan | null = null;

  constructor(
    maxBytes: number,
    private readonly expect: LinearRegex,
  ) {
    this.buffer = Buffer.alloc(maxBytes);
  }

  get bytes(): number {
    return this.length;
  }

  get matched(): boolean {
    return this.match !== null;
  }

  push(chunk: Buffer): CollectState {
    const room = this.buffer.length - this.length;
    const copied = chunk.copy(this.buffer, this.length, 0, Math.min(room, chunk.length));
    this.length += copied;
    this.match = this.expect.exec(this.text());
    if (this.match) return this.lineEnd() >= 0 ? collectState.matched : collectState.partial;
    return this.length >= this.buffer.length ? collectState.overflow : collectState.waiting;
  }

  /** The line(s) holding the match, printable, without line ends. */
  reply(): string {
    if (!this.match) return '';
    const text = this.text();
    const start = Math.max(
      text.lastIndexOf('\n', this.match.index - 1),
      text.lastIndexOf('\r', this.match.index - 1),
    );
    const end = this.lineEnd();
    const line = this.buffer.subarray(start + 1, end >= 0 ? end : this.length);
    return printableBytes(line);
  }

  /** Everything received so far, printable (for debug logs). */
  received(max = 128): string {
    return printableBytes(this.buffer.subarray(0, this.length), max);
  }

  private lineEnd(): number {
    if (!this.match) return -1;
    const text = this.text();
    let from = this.match.index + this.match.length;
    while (from > this.match.index && /[\r\n]/.test(text[from - 1] ?? '')) from--;
    const offset = text.slice(from).search(/[\r\n]/);
    return offset < 0 ? -1 : from + offset;
  }

  private text(): string {
    return this.buffer.toString('latin1', 0, this.length);
  }
}
