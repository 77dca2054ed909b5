/**
 * The upstream's PUBACKs for the bridge's own PUBLISHes, taken from the bytes read before mqtt.js parses them: one
 * PUBACK a forwarded message, and through mqtt.js each cost mqtt-packet's parse (a Packet object and its `debug`
 * calls), a queue, a `packetreceive` event and a `process.nextTick` (docs/performance.md, eighth round). Every other
 * packet, and a PUBACK the bridge does not claim (mqtt.js's own, a malformed one, one with properties), reaches
 * mqtt.js's parser unchanged: the frames are followed by their lengths (the broker core's `frameLength`), and only
 * whole PUBACKs are left out.
 */
import type { Readable } from 'node:stream';
import { frameLength, MALFORMED, PARTIAL } from '../broker/core/framing.js';

const PUBACK = 0x40;
/** The longest PUBACK the filter takes: fixed header, packet id, reason code, empty property list. */
const LONGEST_TAKEN = 6;
const EMPTY = Buffer.alloc(0);

/** Told of a PUBACK (packet id, reason code): true when it was the bridge's, and the bytes are left out. */
export type TakeAck = (packetId: number, reasonCode: number) => boolean;

export class PubackFilter {
  /** Bytes still to come of a frame being passed on. */
  private passing = 0;
  /**
   * The start of a frame that the end of the last chunk cut, held back and read with the next one: a fixed header
   * whose Remaining Length goes on, or a PUBACK short enough to take (a few bytes either way).
   */
  private held: Buffer | undefined;
  /** A Remaining Length longer than four bytes was read: from then on every byte goes to mqtt.js, which refuses it. */
  private broken = false;

  constructor(
    /** MQTT 5 allows a reason code (and properties) after the packet id; 3.1.1 only the id. */
    private readonly v5: boolean,
    private readonly take: TakeAck,
  ) {}

  /** The chunk without the PUBACKs taken: the same buffer when nothing was taken or held, empty when all was. */
  filter(input: Buffer): Buffer {
    if (this.broken) return input;
    const chunk = this.held ? Buffer.concat([this.held, input]) : input;
    this.held = undefined;
    const n = chunk.length;
    let kept: Buffer[] | undefined;
    let keepFrom = 0;
    let keepTo = n;
    let i = Math.min(this.passing, n);
    this.passing -= i;
    while (i < n) {
      const length = frameLength(chunk, i);
      if (length === MALFORMED) {
        this.broken = true;
        break;
      }
      const end = i + length;
      if (length === PARTIAL || (end > n && chunk[i] === PUBACK && length <= LONGEST_TAKEN)) {
        this.held = Buffer.from(chunk.subarray(i));
        keepTo = i;
        break;
      }
      if (end > n) {
        this.passing = end - n;
        break;
      }
      if (chunk[i] === PUBACK && length <= LONGEST_TAKEN && this.claimed(chunk, i + 2, length - 2)) {
        kept ??= [];
        if (i > keepFrom) kept.push(chunk.subarray(keepFrom, i));
        keepFrom = end;
      }
      i = end;
    }
    if (kept === undefined && keepTo === n) return chunk;
    kept ??= [];
    if (keepTo > keepFrom) kept.push(chunk.subarray(keepFrom, keepTo));
    return kept.length === 0 ? EMPTY : kept.length === 1 ? (kept[0] as Buffer) : Buffer.concat(kept);
  }

  /** A whole PUBACK's variable header at `at`, `length` bytes: the bridge's if `take` says so. */
  private claimed(chunk: Buffer, at: number, length: number): boolean {
    if (length === 2) return this.take(chunk.readUInt16BE(at), 0);
    if (!this.v5) return false;
    // MQTT 5: a reason code, then either nothing or an empty property list.
    if (length === 3 || (length === 4 && chunk[at + 3] === 0))
      return this.take(chunk.readUInt16BE(at), chunk[at + 2] as number);
    return false;
  }
}

/**
 * Puts `filter` between a stream and whoever reads it: every chunk the stream pushes (a socket's reads) goes through
 * it first, and a chunk left empty is not pushed at all.
 */
export function tapPushes(stream: Readable, filter: PubackFilter): void {
  const push = stream.push;
  stream.push = function (this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (!Buffer.isBuffer(chunk)) return push.call(this, chunk, encoding);
    const rest = filter.filter(chunk);
    return rest.length === 0 ? true : push.call(this, rest, encoding);
  };
}
