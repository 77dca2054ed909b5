// MQTT 5 flow control towards a client (§4.9): no more QoS 1 and 2 PUBLISHes unacknowledged than the Receive
// Maximum of its CONNECT. aedes 2.0.0-beta.1 stores the value and sends regardless (lib/handlers/connect.js:
// "Both are currently ADVISORY"), and its delivery paths hold no hook where a PUBLISH could wait without
// stalling the publisher behind it. So the window sits on the connection's writes: aedes writes every packet
// through mqtt-packet's writeToStream, and the fixed header of each says what it is.
import type { Socket } from 'node:net';

/** What aedes' parser hands over for an acknowledgement from the client. */
export interface AckPacket {
  cmd: string;
  messageId?: number;
  reasonCode?: number;
}

const PUBLISH = 3;
const FIRST_FAILURE_CODE = 0x80;

/**
 * One connection's send quota. QoS 1/2 PUBLISHes beyond it wait, whole and in order, until an acknowledgement
 * (PUBACK, PUBCOMP, or a PUBREC of 0x80 or more) frees a place; QoS 0 PUBLISHes and other packets go at once.
 * The writer carries on as if a waiting PUBLISH was written, so one slow client never stalls a publisher.
 */
export class ReceiveWindow {
  private readonly inFlight = new Set<number>();
  private readonly waiting: Buffer[][] = [];
  /** The fixed header of the packet being written, while incomplete. */
  private header: number[] = [];
  /** Bytes of the current packet's body still to come; -1 while its fixed header is read. */
  private remaining = -1;
  /** The pieces of a QoS 1/2 PUBLISH being written, kept until it is whole; undefined for other packets. */
  private publish: Buffer[] | undefined;
  private readonly write: (chunk: Buffer) => boolean;

  constructor(
    socket: Socket,
    private readonly maximum: number,
  ) {
    const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
    this.write = write;
    socket.write = ((chunk: Buffer | string, encoding?: BufferEncoding) =>
      this.take(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk)) as Socket['write'];
  }

  /** A packet from the client: an acknowledgement that ends a flow frees its place. */
  received(packet: AckPacket): void {
    const ends =
      packet.cmd === 'puback' ||
      packet.cmd === 'pubcomp' ||
      (packet.cmd === 'pubrec' && (packet.reasonCode ?? 0) >= FIRST_FAILURE_CODE);
    if (!ends || packet.messageId === undefined || !this.inFlight.delete(packet.messageId)) return;
    while (this.inFlight.size < this.maximum) {
      const next = this.waiting.shift();
      if (!next) return;
      this.send(next);
    }
  }

  /** One write by mqtt-packet: a packet, or any piece of one. */
  private take(chunk: Buffer): boolean {
    let written = true;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining < 0) {
        this.header.push(chunk[offset++] as number);
        if (this.header.length > 1 && !continues(this.header)) written = this.startBody() && written;
        continue;
      }
      const size = Math.min(this.remaining, chunk.length - offset);
      const piece = size === chunk.length ? chunk : chunk.subarray(offset, offset + size);
      offset += size;
      this.remaining -= size;
      if (this.publish) this.publish.push(piece);
      else written = this.write(piece) && written;
      if (this.remaining === 0) this.endPacket();
    }
    return written;
  }

  private startBody(): boolean {
    const head = Buffer.from(this.header);
    const first = head[0] as number;
    this.remaining = remainingLength(this.header);
    this.header = [];
    let written = true;
    if (first >> 4 === PUBLISH && ((first >> 1) & 3) > 0) this.publish = [head];
    else written = this.write(head);
    if (this.remaining === 0) this.endPacket();
    return written;
  }

  private endPacket(): void {
    this.remaining = -1;
    const publish = this.publish;
    this.publish = undefined;
    if (!publish) return;
    if (this.waiting.length === 0 && this.inFlight.size < this.maximum) this.send(publish);
    else this.waiting.push(publish);
  }

  private send(publish: Buffer[]): void {
    this.inFlight.add(messageIdOf(publish));
    for (const piece of publish) this.write(piece);
  }
}

/** Whether the last byte of a fixed header read so far says another length byte follows. */
function continues(header: number[]): boolean {
  return header.length < 5 && ((header[header.length - 1] as number) & 0x80) !== 0;
}

function remainingLength(header: number[]): number {
  let value = 0;
  for (let i = header.length - 1; i >= 1; i--) value = value * 128 + ((header[i] as number) & 0x7f);
  return value;
}

/** The packet identifier of a whole QoS 1/2 PUBLISH: after the fixed header, the topic's length and the topic. */
function messageIdOf(publish: Buffer[]): number {
  const body = (publish[0] as Buffer).length;
  const topicLength = byteAt(publish, body) * 256 + byteAt(publish, body + 1);
  const at = body + 2 + topicLength;
  return byteAt(publish, at) * 256 + byteAt(publish, at + 1);
}

function byteAt(pieces: Buffer[], index: number): number {
  let i = index;
  for (const piece of pieces) {
    if (i < piece.length) return piece[i] as number;
    i -= piece.length;
  }
  throw new Error(`PUBLISH shorter than ${index + 1} bytes`);
}
