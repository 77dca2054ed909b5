// Giving a connection to aedes: what the core read of it is pushed back in front of what the socket still
// holds, so aedes reads the CONNECT (and whatever followed) as if it had been first. A client the core already
// answered gets no second CONNACK: aedes' is swallowed on its way out.
import type { Duplex } from 'node:stream';
import { type CoreConnection, STATE } from './connection.js';
import { frameLength, PARTIAL } from './framing.js';

/** What the core hands aedes with a connection; the handler does the rest (aedes.handle, carried state). */
export type HandToAedes = (conn: CoreConnection) => void;

/**
 * Stops reading `conn`, then once every PUBACK it owes is written, pushes `bytes` back into the socket and
 * calls `hand`. `bytes` is the CONNECT, and after a CONNACK the packet that needs aedes and all read after it.
 */
export function handOver(conn: CoreConnection, bytes: Buffer, hand: HandToAedes): void {
  const { socket } = conn;
  const answered = conn.state === STATE.connected;
  conn.state = STATE.handingOver;
  socket.pause(); // the core's own listeners are off already (core.ts); others on the socket stay
  const go = () => {
    conn.onAcked = undefined;
    conn.state = STATE.gone;
    if (socket.destroyed) return;
    socket.unshift(bytes);
    if (answered) swallowFirstPacket(socket);
    hand(conn);
  };
  if (conn.acks.length === 0) go();
  else conn.onAcked = go;
}

/**
 * Drops the first packet written to `socket` (aedes' CONNACK to a replayed CONNECT), however its bytes are cut
 * into writes, and passes every later byte on.
 */
function swallowFirstPacket(socket: Duplex): void {
  const write = socket.write.bind(socket) as (chunk: Buffer, ...rest: unknown[]) => boolean;
  let header: number[] = [];
  let left = -1; // bytes of the packet still to drop; -1 while its fixed header is read
  const swallow = (chunk: Buffer | string, ...rest: unknown[]): boolean => {
    if (left === 0) return write(chunk as Buffer, ...rest);
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let at = 0;
    while (left < 0 && at < bytes.length) {
      header.push(bytes[at++] as number);
      const length = header.length > 1 ? frameLength(Buffer.from(header), 0) : PARTIAL;
      if (length >= 0) left = length - header.length;
    }
    const dropped = Math.min(Math.max(left, 0), bytes.length - at);
    if (left >= 0) left -= dropped;
    at += dropped;
    if (left === 0) {
      header = [];
      if (socket.write === swallow) socket.write = write as Duplex['write'];
    }
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    if (at < bytes.length) return write(bytes.subarray(at), ...rest);
    if (callback) process.nextTick(callback);
    return true;
  };
  socket.write = swallow as Duplex['write'];
}
