// PUBACKs in the order their PUBLISHes came ([MQTT-4.6.0-2]): a refusal decided at once waits behind the
// accepted PUBLISHes before it that are still being committed. What one turn decides leaves each socket as one
// write, after every callback of the commit has run.
import { generate } from 'mqtt-packet';
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

  /** The PUBLISH behind `ack` is decided: 0 (accepted), an MQTT 5 reason code (and why), or CLOSE_HERE. */
  decide(conn: CoreConnection, ack: PendingAck, code: number, reason?: string): void {
    ack.code = code;
    if (reason !== undefined && conn.problemInformation) ack.reason = reason;
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
  let closes = false;
  let refusals = false;
  for (; n < acks.length; n++) {
    const code = (acks[n] as PendingAck).code;
    if (code < 0) break;
    if (code === CLOSE_HERE) {
      closes = true;
      break;
    }
    if (code !== 0) refusals = true;
  }
  const bytes = refusals ? withRefusals(acks, n) : accepted(acks, n);
  acks.splice(0, closes ? acks.length : n);
  if (bytes.length > 0) conn.send(bytes);
  if (closes) {
    if (conn.state !== STATE.gone) conn.close();
    return;
  }
  if (acks.length === 0) conn.onAcked?.();
}

/** The first `n` PUBACKs, all accepting: four bytes each, written without an encoder. */
function accepted(acks: PendingAck[], n: number): Buffer {
  const buf = Buffer.allocUnsafe(4 * n);
  for (let i = 0; i < n; i++) {
    const { messageId } = acks[i] as PendingAck;
    buf[4 * i] = 0x40;
    buf[4 * i + 1] = 2;
    buf[4 * i + 2] = messageId >> 8;
    buf[4 * i + 3] = messageId & 0xff;
  }
  return buf;
}

/** The first `n` PUBACKs with refusals among them (MQTT 5: a reason code, and a Reason String if wanted). */
function withRefusals(acks: PendingAck[], n: number): Buffer {
  const parts = acks.slice(0, n).map(({ messageId, code, reason }) =>
    generate(
      {
        cmd: 'puback',
        messageId,
        ...(code !== 0 ? { reasonCode: code } : {}),
        ...(reason !== undefined ? { properties: { reasonString: reason } } : {}),
      },
      { protocolVersion: 5 },
    ),
  );
  return Buffer.concat(parts);
}
