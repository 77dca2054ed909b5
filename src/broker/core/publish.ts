// PUBLISH (QoS 0 and 1) on the core: topic alias, the ACL, the client's token bucket, the sync layer's ingest,
// then aedes' routing to local subscribers and persistent sessions; the PUBACK only after both, in order.
import type { PublishPacket } from 'aedes';
import type { IPublishPacket } from 'mqtt-packet';
import { errorMessage } from '../../util/errors.js';
import { ingestRefusal, refusalMessage } from '../refusals.js';
import { CLOSE_HERE } from './acks.js';
import { type CoreConnection, type PendingAck, STATE } from './connection.js';
import type { CoreContext } from './context.js';

/** MQTT 5 reason codes the core answers a PUBLISH with. */
const RC = {
  notAuthorized: 0x87,
  topicNameInvalid: 0x90,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  quotaExceeded: 0x97,
} as const;

const disconnect = (reasonCode: number) => Buffer.from([0xe0, 1, reasonCode]);

/** A PUBLISH of QoS 0 or 1 (QoS 2 is aedes', see core.ts). */
export function publish(ctx: CoreContext, conn: CoreConnection, packet: IPublishPacket): void {
  const { o, acks } = ctx;
  if (conn.version === 5 && packet.properties?.topicAlias !== undefined && !resolveAlias(ctx, conn, packet)) {
    conn.close(disconnect(RC.topicAliasInvalid));
    return;
  }
  const topic = packet.topic;
  if (topic.length === 0 || topic.includes('+') || topic.includes('#')) {
    if (conn.version === 5) conn.close(disconnect(RC.topicNameInvalid));
    else conn.abort();
    return;
  }
  if (packet.qos === 1 && conn.acks.length >= o.receiveMaximum) {
    if (conn.version === 5) conn.close(disconnect(RC.receiveMaximumExceeded));
    else conn.abort();
    return;
  }
  const ack = packet.qos === 1 ? acks.expect(conn, packet.messageId as number) : undefined;
  const identity = conn.identity as NonNullable<CoreConnection['identity']>;
  if (!o.authorizer.canPublish(identity, topic)) {
    o.refuse('publish', conn.clientId, { topic }, 'PUBLISH refused: not allowed for this client');
    refused(ctx, conn, ack, RC.notAuthorized, 'not authorized for this topic');
    return;
  }
  if (!conn.bucket?.take()) {
    o.refuse('rate', conn.clientId, { topic }, 'PUBLISH refused: client over its rate limit');
    refused(ctx, conn, ack, RC.quotaExceeded, 'message rate too high');
    return;
  }
  const message = packet as unknown as PublishPacket;
  o.ingest(identity, conn.clientId, message, (err) => {
    if (err) {
      const reason = ingestRefusal(err);
      o.refuse(reason, conn.clientId, { topic, err: errorMessage(err) }, refusalMessage[reason]);
      // Not authorized, as aedes answers every refusal of its authorizePublish hook (the tests hold it).
      refused(ctx, conn, ack, RC.notAuthorized, errorMessage(err));
      return;
    }
    o.aedes.publish(message, () => {
      if (ack) acks.decide(conn, ack, 0);
    });
  });
}

/**
 * MQTT 5 says why in the PUBACK and keeps the connection; a QoS 0 refusal is dropped without a word. MQTT 3.1.1,
 * which cannot say why, is disconnected — after the PUBACKs of the PUBLISHes before it.
 */
function refused(
  ctx: CoreContext,
  conn: CoreConnection,
  ack: PendingAck | undefined,
  code: number,
  reason: string,
): void {
  if (conn.version === 5) {
    if (ack) ctx.acks.decide(conn, ack, code, reason);
    return;
  }
  conn.state = STATE.closing;
  if (ack) ctx.acks.decide(conn, ack, CLOSE_HERE);
  else ctx.acks.closeAfterPending(conn);
}

/**
 * A Topic Alias ([MQTT-3.3.2-7..13]): a PUBLISH with a topic sets it, one without takes the topic it stands
 * for. The alias is the connection's and is stripped before the message goes anywhere. False: out of range,
 * or unknown.
 */
function resolveAlias(ctx: CoreContext, conn: CoreConnection, packet: IPublishPacket): boolean {
  const properties = packet.properties as NonNullable<IPublishPacket['properties']>;
  const alias = properties.topicAlias as number;
  if (alias < 1 || alias > ctx.o.topicAliasMaximum) return false;
  if (packet.topic.length > 0) {
    conn.aliases ??= new Map();
    conn.aliases.set(alias, packet.topic);
  } else {
    const topic = conn.aliases?.get(alias);
    if (topic === undefined) return false;
    packet.topic = topic;
  }
  properties.topicAlias = undefined;
  return true;
}
