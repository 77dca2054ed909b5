// How a message goes out to one client: what aedes 2.0.0-beta.1 leaves undone, each found by the conformance
// suite (test/conformance/) against mosquitto.
import { Readable } from 'node:stream';
import type { AedesPublishPacket, Client } from 'aedes';
import { generate } from 'mqtt-packet';
import { topicMatches } from '../model/topics.js';
import { SqlitePersistence } from './persistence.js';

/** What aedes keeps per subscription of a client (its `subscriptions` map, by filter). */
interface ClientSubscription {
  qos: number;
  /** MQTT 5 subscription identifier. */
  si?: number;
}

type DeliveringClient = Client & { subscriptions: Record<string, ClientSubscription> };

/**
 * aedes' `authorizeForward` hook, called per client delivery on that delivery's own copy of the message;
 * null drops it as if it had been delivered.
 * - QoS: the highest of the client's subscriptions that match (3.1.1 [MQTT-3.3.5-1], 5.0 [MQTT-3.8.4-8]);
 *   aedes caps it only by a subscription whose filter equals the topic, so a QoS 1 wildcard subscription
 *   got QoS 2 messages at QoS 2.
 * - Subscription identifiers: aedes sends one copy however many subscriptions match; it carries the
 *   identifiers of all of them (5.0 [MQTT-3.3.4-3]), not one.
 * - A message larger than the client's Maximum Packet Size is not sent to it (5.0 [MQTT-3.1.2-24]).
 */
export function shapeDelivery(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
  const dollar = packet.topic.startsWith('$'); // not matched by a filter that starts with a wildcard
  const matching = Object.entries((client as DeliveringClient).subscriptions ?? {})
    .filter(([filter]) => !(dollar && /^[+#]/.test(filter)) && topicMatches(filter, packet.topic))
    .map(([, sub]) => sub);
  const highest = Math.max(0, ...matching.map((s) => s.qos));
  if (packet.qos > 0 && highest > 0 && highest < packet.qos) packet.qos = highest as 1 | 2;
  const identifiers = [...new Set(matching.flatMap((s) => (s.si === undefined ? [] : [s.si])))];
  if (identifiers.length > 0) {
    identifiers.sort((a, b) => a - b);
    const subscriptionIdentifier = identifiers.length === 1 ? identifiers[0] : identifiers;
    packet.properties = { ...packet.properties, subscriptionIdentifier } as typeof packet.properties;
  }
  const limit = client.maximumPacketSize;
  return limit !== undefined && wireSize(packet, client.version) > limit ? null : packet;
}

/**
 * The size of the PUBLISH as it would go to the client (a message id counted where it will get one): its
 * header written without the payload, then the payload's length added, so a large payload is not copied.
 */
export function wireSize(packet: AedesPublishPacket, version: number | undefined): number {
  const head = generate(
    { ...packet, payload: EMPTY, messageId: packet.qos > 0 ? 1 : undefined } as Parameters<
      typeof generate
    >[0],
    { protocolVersion: version ?? 4 },
  );
  let lengthBytes = 1;
  while (((head[lengthBytes] ?? 0) & 0x80) !== 0) lengthBytes++;
  const remaining = head.length - 1 - lengthBytes + Buffer.byteLength(packet.payload ?? EMPTY);
  return 1 + varintBytes(remaining) + remaining;
}

const EMPTY = Buffer.alloc(0);
const varintBytes = (n: number) => (n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4);

/**
 * The SQLite persistence, with resent PUBLISHes marked DUP ([MQTT-3.3.1-1]): aedes 2.0.0-beta.1 resends a
 * session's unacknowledged messages on reconnect with DUP 0. A queued PUBLISH that already has a message id
 * was sent before; one queued while its client was offline has none yet and goes out as a first delivery.
 */
export class EdgePersistence extends SqlitePersistence {
  override outgoingStream(client: Parameters<SqlitePersistence['outgoingStream']>[0]): Readable {
    const queued = super.outgoingStream(client) as AsyncIterable<AedesPublishPacket>;
    return Readable.from(
      (async function* () {
        for await (const packet of queued) {
          const resent = packet.cmd === 'publish' && typeof packet.messageId === 'number';
          yield resent ? { ...packet, dup: true } : packet;
        }
      })(),
    );
  }
}
