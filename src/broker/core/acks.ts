// PUBACKs in the order their PUBLISHes came ([MQTT-4.6.0-2]): a refusal decided at once waits behind the
// accepted PUBLISHes before it that are still being committed. What one turn decides leaves each socket as one
// write, after every callback of the commit has run.
import { type CoreConnection, type PendingAck, STATE } from './connection.js';

/** Where a refused PUBLISH on an MQTT 3.1.1 connection stands in the queue: the connection closes there. */
export const CLOSE_HERE = 0x100;

export class AckWriter {
  private readonly dirty = new Set<CoreConnection>();
  private queued = false;

  /** A QoS 1 PUBLISH arrived: its PUBACK's place in the connection's queue. */
  expect(conn: CoreConnection, messageId: number): PendingAck {
    const ack = { messageId, code: -1 };
    conn.acks.push(ack);
    return ack;
  }

  /** The PUBLISH behind `ack` is decided: 0 (accepted), an MQTT 5 reason code, or CLOSE_HERE. */
  decide(conn: CoreConnection, ack: PendingAck, code: number): void {
    ack.code = code;
    if (conn.acks[0] !== ack) return; // written when the ones before it are decided
    this.dirty.add(conn);
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(this.flush);
  }

  /** A refusal with no PUBACK of its own (QoS 0 on MQTT 3.1.1): the connection closes after the ones before. */
  closeAfterPending(conn: CoreConnection): void {
    this.decide(conn, this.expect(conn, 0), CLOSE_HERE);
  }

  private readonly flush = (): void => {
    this.queued = false;
    for (const conn of this.dirty) write(conn);
    this.dirty.clear();
  };
}

/** Writes the decided PUBACKs at the head of the queue as one buffer; stops at the first undecided one. */
function write(conn: CoreConnection): void {
  const { acks } = conn;
  let n = 0;
  let bytes = 0;
  let closes = false;
  for (; n < acks.length; n++) {
    const code = (acks[n] as PendingAck).code;
    if (code < 0) break;
    if (code === CLOSE_HERE) {
      closes = true;
      break;
    }
    bytes += code === 0 ? 4 : 5;
  }
  const buf = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const { messageId, code } = acks[i] as PendingAck;
    buf[at++] = 0x40;
    buf[at++] = code === 0 ? 2 : 3;
    buf[at++] = messageId >> 8;
    buf[at++] = messageId & 0xff;
    if (code !== 0) buf[at++] = code;
  }
  acks.splice(0, closes ? acks.length : n);
  if (bytes > 0) conn.send(buf);
  if (closes) {
    if (conn.state !== STATE.gone) conn.close();
    return;
  }
  if (acks.length === 0) conn.onAcked?.();
}
