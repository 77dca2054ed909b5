// One connection the core owns: its socket and the little state an MQTT session without subscriptions needs.
// No parser, stream or timer of its own (framing.ts decodes, keepalive.ts sweeps, acks.ts writes).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Identity } from '../auth.js';
import type { VerifiedCertificate } from '../listeners.js';
import type { TokenBucket } from '../rateLimit.js';

export const STATE = {
  /** Waiting for CONNECT. */
  new: 0,
  /** CONNECT read, its credentials being checked; later packets wait. */
  authenticating: 1,
  connected: 2,
  /** Waiting for its PUBACKs to leave before aedes takes the socket. */
  handingOver: 3,
  /** Given to aedes, or closing: the core reads nothing more from it. */
  gone: 4,
  /** Refused on MQTT 3.1.1: reads nothing more, closes once the PUBACKs before the refusal are written. */
  closing: 5,
} as const;
export type State = (typeof STATE)[keyof typeof STATE];

/** Bytes written to a client and not yet taken by it, past which it is dropped (256 Ki PUBACKs). */
const UNREAD_LIMIT = 1 << 20;

/** A QoS 1 PUBLISH whose PUBACK waits its turn: code -1 until decided, then 0 or a reason code. */
export interface PendingAck {
  messageId: number;
  code: number;
  /** Why it was refused (MQTT 5 Reason String), unless the client asked for no problem information. */
  reason?: string;
}

export class CoreConnection {
  state: State = STATE.new;
  version = 0;
  clientId = '';
  identity: Identity | undefined;
  bucket: TokenBucket | undefined;
  /** MQTT 5 Request Problem Information: false asks for no Reason String ([MQTT-3.1.2-29]). */
  problemInformation = true;
  /** Keep Alive in seconds from CONNECT (0: none). */
  keepalive = 0;
  /** The sweep's tick when a byte last arrived. */
  seen: number;
  /** The sweep's tick when the connection was accepted. */
  readonly since: number;
  /** The CONNECT as it came, replayed into aedes if the client is handed over after its CONNACK. */
  connectFrame: Buffer | undefined;
  /** MQTT 5 topic aliases the client set (at most the CONNACK's Topic Alias Maximum). */
  aliases: Map<number, string> | undefined;
  /** QoS 1 PUBLISHes whose PUBACK has not been written, in the order they came ([MQTT-4.6.0-2]). */
  readonly acks: PendingAck[] = [];
  /** Bytes read and not yet framed: a partial frame, or frames that came while CONNECT was being checked. */
  parts: Buffer[] | undefined;
  partsBytes = 0;
  /** The length of the frame `parts` holds the start of (0: not known yet). */
  need = 0;
  /** The sweep's tick when the core closed it (a peer that never closes its side is destroyed after a while). */
  goneAt = 0;
  /** Called once the last pending PUBACK is written (a handover waits for it). */
  onAcked: (() => void) | undefined;

  constructor(
    /** The core's connected clients by id, which this connection leaves as it closes. */
    private readonly registry: Map<string, CoreConnection>,
    readonly socket: Duplex,
    readonly req: IncomingMessage | undefined,
    readonly certificate: VerifiedCertificate | undefined,
    tick: number,
  ) {
    this.seen = tick;
    this.since = tick;
  }

  /**
   * Writes when the socket is still there; the core never waits for a write. A client that stops reading what
   * it is sent (while it goes on publishing) is dropped once that much waits for it.
   */
  send(bytes: Buffer): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    if (this.socket.writableLength > UNREAD_LIMIT) this.abort();
    else this.socket.write(bytes);
  }

  /** Stops reading, sends `last` if given (a CONNACK refusal, a DISCONNECT), and ends the connection. */
  close(last?: Buffer): void {
    this.leave();
    if (!this.socket.destroyed && this.socket.writable) this.socket.end(last);
    else this.socket.destroy();
  }

  /** Drops the connection at once (malformed input): nothing more is read or written. */
  abort(): void {
    this.leave();
    this.socket.destroy();
  }

  /** No longer a connected client: out of the registry (if still its entry), and read no more. */
  leave(): void {
    this.state = STATE.gone;
    if (this.registry.get(this.clientId) === this) this.registry.delete(this.clientId);
  }
}
