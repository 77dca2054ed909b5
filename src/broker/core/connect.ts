// CONNECT on the core: which clients it keeps, their authentication, session takeover and the CONNACK.
import type { IConnectPacket } from 'mqtt-packet';
import { generate } from 'mqtt-packet';
import { errorMessage } from '../../util/errors.js';
import type { AuthResult } from '../auth.js';
import { TokenBucket } from '../rateLimit.js';
import { type CoreConnection, STATE } from './connection.js';
import type { CoreContext, CoreOptions } from './context.js';

/** MQTT 5 DISCONNECT 0x8E: the old connection of a client id that connected again. */
const DISCONNECT_TAKEN_OVER = Buffer.from([0xe0, 1, 0x8e]);
const CONNACK_V4 = Buffer.from([0x20, 2, 0, 0]);

/** The CONNACKs that accept, built once: MQTT 5's carries what aedes' carries, and our Receive Maximum. */
export function acceptingConnacks(o: CoreOptions): Record<4 | 5, Buffer> {
  const properties = {
    sharedSubscriptionAvailable: false,
    topicAliasMaximum: o.topicAliasMaximum,
    maximumPacketSize: o.maxPacketSize,
    receiveMaximum: o.receiveMaximum,
  };
  const v5 = generate(
    { cmd: 'connack', sessionPresent: false, reasonCode: 0, properties },
    { protocolVersion: 5 },
  );
  return { 4: CONNACK_V4, 5: v5 };
}

/**
 * Whether the core keeps this client: a clean session that ends with the connection, with no will, on MQTT
 * 3.1.1 or 5, with a client id of its own (an empty one is assigned by aedes), without enhanced authentication,
 * and with no session or connection aedes holds for that id (aedes then discards or takes it over itself).
 */
export function keeps(packet: IConnectPacket, aedesOwns: (id: string) => boolean): boolean {
  const p = packet.properties;
  return (
    packet.protocolId === 'MQTT' &&
    (packet.protocolVersion === 4 || packet.protocolVersion === 5) &&
    packet.clean === true &&
    !packet.will &&
    (p?.sessionExpiryInterval ?? 0) === 0 &&
    p?.receiveMaximum !== 0 &&
    p?.authenticationMethod === undefined &&
    p?.authenticationData === undefined &&
    p?.requestResponseInformation !== true &&
    packet.clientId !== '' &&
    !aedesOwns(packet.clientId)
  );
}

/** Authenticates a CONNECT the core keeps; answers it, or refuses it with the codes aedes uses. */
export function connect(ctx: CoreContext, conn: CoreConnection, packet: IConnectPacket): void {
  const { o } = ctx;
  conn.state = STATE.authenticating;
  conn.version = packet.protocolVersion as number;
  conn.clientId = packet.clientId;
  conn.keepalive = packet.keepalive ?? 0;
  conn.problemInformation = packet.properties?.requestProblemInformation !== false;
  const certificate = conn.certificate;
  const checked: Promise<AuthResult> = certificate
    ? Promise.resolve(o.authorizer.authenticateCertificate(certificate.name, packet.username))
    : o.authorizer.authenticate(packet.username, packet.password);
  checked.then(
    (result) => {
      if (conn.state !== STATE.authenticating || conn.socket.destroyed) return;
      if (!result.ok) {
        o.refuse(
          'connect',
          conn.clientId,
          { username: packet.username, certificate: certificate?.name, cause: result.reason },
          'CONNECT refused',
        );
        refuse(conn, result.reason === 'anonymous-refused' ? 5 : 4);
        return;
      }
      accept(ctx, conn, result.identity);
    },
    (err: unknown) => {
      o.logger.error({ clientId: conn.clientId, err: errorMessage(err) }, 'authentication failed');
      if (conn.state === STATE.authenticating) refuse(conn, 3);
    },
  );
}

/** MQTT 3.1.1 return codes and their MQTT 5 reason codes, as aedes maps them. */
const V5_REASON: Record<number, number> = { 3: 0x88, 4: 0x86, 5: 0x87 };

function refuse(conn: CoreConnection, returnCode: 3 | 4 | 5): void {
  conn.close(
    conn.version === 5
      ? Buffer.from([0x20, 3, 0, V5_REASON[returnCode] as number, 0])
      : Buffer.from([0x20, 2, 0, returnCode]),
  );
}

function accept(ctx: CoreContext, conn: CoreConnection, identity: NonNullable<CoreConnection['identity']>) {
  const { o, clients } = ctx;
  if (o.aedes.owns(conn.clientId)) {
    // aedes took this id while the credentials were checked: it does the takeover.
    ctx.handOver(conn, conn.connectFrame as Buffer);
    return;
  }
  const old = clients.get(conn.clientId);
  if (old) takeOver(old);
  conn.identity = identity;
  conn.bucket = new TokenBucket(o.rateLimit.messagesPerSecond, o.rateLimit.burst);
  conn.state = STATE.connected;
  clients.set(conn.clientId, conn);
  conn.send(ctx.connacks[conn.version === 5 ? 5 : 4]);
  ctx.resume(conn);
}

/** Closes the core's connection of a client id that connected again ([MQTT-3.1.4-2]). */
export function takeOver(old: CoreConnection): void {
  if (old.version === 5) old.close(DISCONNECT_TAKEN_OVER);
  else old.abort();
}
