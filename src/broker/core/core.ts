// The broker core: owns the sockets of publish-only clean sessions and ingests their telemetry without aedes'
// per-client machinery; aedes keeps everything else (subscriptions, retained, wills, QoS 2, persistent
// sessions), a connection at a time. docs/performance.md, "Sixth round", says what it costs.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { IConnectPacket, IPublishPacket } from 'mqtt-packet';
import type { VerifiedCertificate } from '../listeners.js';
import { AckWriter } from './acks.js';
import { acceptingConnacks, connect, keeps, takeOver } from './connect.js';
import { CoreConnection, STATE } from './connection.js';
import type { CoreContext, CoreOptions } from './context.js';
import { decode, decodePublish, frameLength, MALFORMED, PARTIAL, packetType, TYPE } from './framing.js';
import { handOver } from './handover.js';
import { KeepaliveSweep } from './keepalive.js';
import { publish } from './publish.js';

const PINGRESP = Buffer.from([0xd0, 0]);
/** A CONNECT's first byte: its type and the flags it must have ([MQTT-2.2.2-2]). */
const CONNECT_BYTE = 0x10;
/** MQTT 5 DISCONNECT 0x95 (Packet too large) and 0x8B (Server shutting down). */
const DISCONNECT_TOO_LARGE = Buffer.from([0xe0, 1, 0x95]);
const DISCONNECT_SHUTTING_DOWN = Buffer.from([0xe0, 1, 0x8b]);

/** The connection a socket belongs to: one property, so the socket's listeners are shared, not per client. */
const CONN = Symbol('coreConnection');
type CoreSocket = Duplex & { [CONN]?: CoreConnection };

export class BrokerCore implements CoreContext {
  readonly clients = new Map<string, CoreConnection>();
  readonly acks = new AckWriter();
  readonly connacks: Record<4 | 5, Buffer>;
  /** Every connection the core reads, connected or not. */
  private readonly connections = new Set<CoreConnection>();
  private readonly sweep: KeepaliveSweep;

  constructor(readonly o: CoreOptions) {
    this.connacks = acceptingConnacks(o);
    this.sweep = new KeepaliveSweep(this.connections, o.sweep);
    const core = this;
    this.onData = function (this: CoreSocket, chunk: Buffer) {
      const conn = this[CONN];
      if (conn) core.read(conn, chunk);
    };
    this.onClose = function (this: CoreSocket) {
      const conn = this[CONN];
      if (conn) core.forget(conn);
    };
  }

  /** Clients connected to the core. */
  get connected(): number {
    return this.clients.size;
  }

  start(): void {
    this.sweep.start();
  }

  /** A new connection (plain, TLS or WebSocket): the core reads its CONNECT and decides who keeps it. */
  accept(socket: Duplex, req: IncomingMessage | undefined, certificate?: VerifiedCertificate): void {
    const conn = new CoreConnection(this.clients, socket, req, certificate, this.sweep.tick);
    (socket as CoreSocket)[CONN] = conn;
    this.connections.add(conn);
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', ignore);
  }

  /** The client id's connection on the core is closed ([MQTT-3.1.4-2]): aedes is taking the id. */
  release(clientId: string): void {
    const conn = this.clients.get(clientId);
    if (!conn) return;
    this.clients.delete(clientId);
    takeOver(conn);
  }

  /** Closes every connection (MQTT 5 clients hear 0x8B) and stops the sweep. */
  close(): void {
    this.sweep.stop();
    for (const conn of this.connections) {
      if (conn.state === STATE.connected && conn.version === 5) conn.close(DISCONNECT_SHUTTING_DOWN);
      conn.socket.destroy();
    }
    this.connections.clear();
    this.clients.clear();
  }

  handOver(conn: CoreConnection, bytes: Buffer): void {
    const held = conn.parts;
    const replay = held ? Buffer.concat([bytes, ...held]) : bytes;
    conn.parts = undefined;
    if (this.clients.get(conn.clientId) === conn) this.clients.delete(conn.clientId);
    this.connections.delete(conn);
    conn.socket.removeListener('close', this.onClose);
    conn.socket.removeListener('data', this.onData);
    handOver(conn, replay, (c) => {
      (c.socket as CoreSocket)[CONN] = undefined;
      this.o.aedes.take(c);
    });
  }

  resume(conn: CoreConnection): void {
    if (conn.parts && conn.need === 0) this.read(conn, undefined);
    conn.socket.resume();
  }

  /** The socket listeners: one pair for the core, each finding its connection on the socket it is called on. */
  private readonly onData: (chunk: Buffer) => void;
  private readonly onClose: () => void;

  private forget(conn: CoreConnection): void {
    conn.leave();
    this.connections.delete(conn);
  }

  /** Frames what arrived (with what was left from before) and handles each whole frame. */
  read(conn: CoreConnection, chunk: Buffer | undefined): void {
    conn.seen = this.sweep.tick;
    let buf: Buffer;
    if (conn.parts) {
      if (chunk) {
        conn.parts.push(chunk);
        conn.partsBytes += chunk.length;
      }
      if (conn.need > conn.partsBytes) return;
      buf = conn.parts.length === 1 ? (conn.parts[0] as Buffer) : Buffer.concat(conn.parts, conn.partsBytes);
      conn.parts = undefined;
      conn.partsBytes = 0;
      conn.need = 0;
    } else if (chunk) buf = chunk;
    else return;
    let at = 0;
    while (at < buf.length) {
      if (conn.state === STATE.authenticating) {
        this.keep(conn, buf.subarray(at), 0, true);
        return;
      }
      if (conn.state !== STATE.new && conn.state !== STATE.connected) return;
      if (conn.state === STATE.new && buf[at] !== CONNECT_BYTE) {
        conn.abort(); // the first packet is a CONNECT ([MQTT-3.1.0-1]); an HTTP request is not
        return;
      }
      const length = frameLength(buf, at);
      if (length === PARTIAL) {
        this.keep(conn, buf.subarray(at), 0, false);
        return;
      }
      if (length === MALFORMED) {
        conn.abort();
        return;
      }
      if (length > this.o.maxPacketSize) {
        this.tooLarge(conn);
        return;
      }
      if (at + length > buf.length) {
        this.keep(conn, buf.subarray(at), length, false);
        return;
      }
      const frame = buf.subarray(at, at + length);
      at += length;
      this.handle(conn, frame, buf, at);
    }
  }

  /** Bytes kept for later: a partial frame (`need` its length when known), or frames held during CONNECT. */
  private keep(conn: CoreConnection, rest: Buffer, need: number, pause: boolean): void {
    conn.parts = [rest];
    conn.partsBytes = rest.length;
    conn.need = need;
    if (pause) conn.socket.pause();
  }

  /** Refused from the fixed header, before the body is read: MQTT 5 hears why, 3.1.1 is closed. */
  private tooLarge(conn: CoreConnection): void {
    if (conn.version === 5 && conn.state === STATE.connected) conn.close(DISCONNECT_TOO_LARGE);
    else conn.abort();
  }

  /** One whole frame; `buf` from `next` on is what was read after it (replayed if aedes takes over here). */
  private handle(conn: CoreConnection, frame: Buffer, buf: Buffer, next: number): void {
    const type = packetType(frame[0] as number);
    if (conn.state === STATE.new) {
      const packet = decode(frame, 4);
      if (packet instanceof Error) {
        conn.abort();
        return;
      }
      const connectPacket = packet as IConnectPacket;
      if (!keeps(connectPacket, (id) => this.o.aedes.owns(id))) {
        this.handOver(conn, Buffer.concat([frame, buf.subarray(next)]));
        return;
      }
      conn.connectFrame = Buffer.from(frame);
      connect(this, conn, connectPacket);
      return;
    }
    switch (type) {
      case TYPE.publish:
        if (((frame[0] as number) & 0x06) === 0x04) break; // QoS 2: aedes'
        this.publish(conn, frame);
        return;
      case TYPE.pingreq:
        conn.send(PINGRESP);
        return;
      case TYPE.disconnect:
        conn.close();
        return;
      case TYPE.connect:
        conn.abort(); // a second CONNECT is a protocol error ([MQTT-3.1.0-2])
        return;
    }
    // SUBSCRIBE, UNSUBSCRIBE, QoS 2, AUTH and anything else: the client becomes aedes'.
    const connectFrame = conn.connectFrame as Buffer;
    this.handOver(conn, Buffer.concat([connectFrame, frame, buf.subarray(next)]));
  }

  private publish(conn: CoreConnection, frame: Buffer): void {
    const packet = decodePublish(frame, conn.version);
    if (packet instanceof Error) {
      conn.abort();
      return;
    }
    publish(this, conn, packet as IPublishPacket);
  }
}

function ignore(): void {}
