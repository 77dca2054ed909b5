/**
 * The upstream's PUBACKs for the bridge's own PUBLISHes, taken from the bytes read before mqtt.js parses them: one
 * PUBACK a forwarded message, and through mqtt.js each cost mqtt-packet's parse (a Packet object and its `debug`
 * calls), a queue, a `packetreceive` event and a `process.nextTick` (docs/performance.md, eighth round). Every other
 * packet, and a PUBACK the bridge does not claim (mqtt.js's own, a malformed one, one with properties), reaches
 * mqtt.js's parser unchanged: the frames are followed by their lengths, and only whole PUBACKs are left out.
 */
import type { Readable } from 'node:stream';

const PUBACK = 0x40;
const EMPTY = Buffer.alloc(0);

/** Told of a PUBACK (packet id, reason code): true when it was the bridge's, and the bytes are left out. */
export type TakeAck = (packetId: number, reasonCode: number) => boolean;

export class PubackFilter {
  /** Bytes still to come of a frame being passed on. */
  private passing = 0;
  /** A Remaining Length cut by the end of a chunk: its value and multiplier so far (the frame is passed on). */
  private lengthSoFar = -1;
  private multiplier = 1;
  /** A Remaining Length longer than four bytes was read: from then on every byte goes to mqtt.js. */
  private broken = false;

  constructor(
    /** MQTT 5 allows a reason code (and properties) after the packet id; 3.1.1 only the id. */
    private readonly v5: boolean,
    private readonly take: TakeAck,
  ) {}

  /** The chunk without the PUBACKs taken: the same buffer when none was, empty when all were. */
  filter(chunk: Buffer): Buffer {
    if (this.broken) return chunk;
    const n = chunk.length;
    let kept: Buffer[] | undefined;
    let keepFrom = 0;
    let i = 0;
    while (i < n) {
      if (this.passing > 0) {
        const step = Math.min(this.passing, n - i);
        this.passing -= step;
        i += step;
        continue;
      }
      if (this.lengthSoFar >= 0) {
        i = this.continueLength(chunk, i);
        continue;
      }
      const start = i;
      const header = chunk[i++] as number;
      this.lengthSoFar = 0;
      this.multiplier = 1;
      i = this.continueLength(chunk, i);
      if (this.lengthSoFar >= 0 || this.broken) break; // the length goes on in the next chunk
      const end = i + this.passing;
      if (header === PUBACK && end <= n && this.claimed(chunk, i, this.passing)) {
        this.passing = 0;
        kept ??= [];
        if (start > keepFrom) kept.push(chunk.subarray(keepFrom, start));
        keepFrom = end;
        i = end;
      }
    }
    if (kept === undefined) return chunk;
    if (keepFrom < n) kept.push(chunk.subarray(keepFrom));
    return kept.length === 0 ? EMPTY : kept.length === 1 ? (kept[0] as Buffer) : Buffer.concat(kept);
  }

  /** Reads Remaining Length bytes from `at`; once complete, `passing` is the frame's rest. Returns the next index. */
  private continueLength(chunk: Buffer, at: number): number {
    let i = at;
    while (i < chunk.length) {
      const byte = chunk[i++] as number;
      this.lengthSoFar += (byte & 0x7f) * this.multiplier;
      if ((byte & 0x80) === 0) {
        this.passing = this.lengthSoFar;
        this.lengthSoFar = -1;
        return i;
      }
      this.multiplier *= 128;
      if (this.multiplier > 128 ** 3) {
        // Malformed: mqtt.js's parser gets it and decides.
        this.broken = true;
        this.lengthSoFar = -1;
        return chunk.length;
      }
    }
    return i;
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
