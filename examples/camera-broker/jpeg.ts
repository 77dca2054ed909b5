/**
 * Cuts a stream of concatenated JPEG images (ffmpeg's `-f image2pipe -c:v mjpeg`) into single images by
 * walking their marker segments, not by searching for FF D9: an EOI pattern may occur inside a segment
 * (tables, EXIF), never inside entropy-coded data, where every FF is followed by 00 or a restart marker.
 */

export interface JpegFrame {
  data: Buffer;
  width: number;
  height: number;
}

export class JpegStreamError extends Error {
  readonly code = 'JPEG_STREAM';
}

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;

/** Start-of-frame markers C0-CF carry the image size, except DHT (C4), JPG (C8) and DAC (CC). */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** Markers without a length field: TEM and the restart markers. */
function isStandalone(marker: number): boolean {
  return marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7);
}

/** End of the entropy-coded data that starts at `from`: the index of the next marker, or -1 if not in yet. */
function scanEnd(buf: Buffer, from: number): number {
  let i = from;
  for (;;) {
    const ff = buf.indexOf(0xff, i);
    if (ff < 0 || ff + 1 >= buf.length) return -1;
    const next = buf[ff + 1]!;
    if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) i = ff + 2;
    else if (next === 0xff) i = ff + 1;
    else return ff;
  }
}

/** The image starting at `start` (at its SOI): its end and size, or undefined when it is not all in yet. */
export function parseJpeg(
  buf: Buffer,
  start = 0,
): { end: number; width: number; height: number } | undefined {
  if (buf[start] !== 0xff || buf[start + 1] !== SOI) throw new JpegStreamError('not a JPEG: no SOI marker');
  let width = 0;
  let height = 0;
  let i = start + 2;
  for (;;) {
    if (i + 2 > buf.length) return undefined;
    if (buf[i] !== 0xff) throw new JpegStreamError(`no marker at byte ${i - start} of the image`);
    const marker = buf[i + 1]!;
    if (marker === 0xff) i += 1;
    else if (marker === EOI) return { end: i + 2, width, height };
    else if (isStandalone(marker)) i += 2;
    else {
      if (i + 4 > buf.length) return undefined;
      const length = buf.readUInt16BE(i + 2);
      if (i + 2 + length > buf.length) return undefined;
      if (isStartOfFrame(marker) && length >= 7) {
        height = buf.readUInt16BE(i + 5);
        width = buf.readUInt16BE(i + 7);
      }
      i += 2 + length;
      if (marker === SOS) {
        const end = scanEnd(buf, i);
        if (end < 0) return undefined;
        i = end;
      }
    }
  }
}

/** Feed it chunks, get whole images back. A stream that is not JPEG, or an image over `maxBytes`, throws. */
export class JpegSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): JpegFrame[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    let buf = this.pending.length === 1 ? chunk : Buffer.concat(this.pending, this.pendingBytes);
    const frames: JpegFrame[] = [];
    for (;;) {
      if (buf.length < 2) break;
      const parsed = parseJpeg(buf);
      if (!parsed) break;
      frames.push({
        data: Buffer.from(buf.subarray(0, parsed.end)),
        width: parsed.width,
        height: parsed.height,
      });
      buf = buf.subarray(parsed.end);
    }
    if (buf.length > this.maxBytes) {
      throw new JpegStreamError(`an image is larger than ${this.maxBytes} bytes`);
    }
    this.pending = buf.length > 0 ? [buf] : [];
    this.pendingBytes = buf.length;
    return frames;
  }
}
