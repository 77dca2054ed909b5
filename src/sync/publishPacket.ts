/**
 * QoS 1 PUBLISH packets encoded by hand, many into one buffer, for the upstream bridge: one socket write per
 * batch and no per-packet objects (mqtt.js's `publish` built an options object, a store entry and a packet per
 * message, and mqtt-packet wrote each packet in several pieces). MQTT 3.1.1 §3.3 and MQTT 5 §3.3.
 */

/** What one upstream PUBLISH carries (an outbox entry has this shape). Properties are sent only over MQTT 5. */
export interface Qos1Publish {
  /** Written after the batch's topic prefix (the upstream root), without joining the two strings. */
  topic: string;
  payload: Buffer;
  /** The stable message id, sent as one more user property after the others, replacing one of its name (MQTT 5). */
  msgId: string;
  props?: { userProperties?: Record<string, string>; correlationData?: Buffer; contentType?: string };
}

export interface PublishBatchOptions {
  protocolVersion: 4 | 5;
  prefix: string;
  /** The user property that carries `msgId`. */
  msgIdProperty: string;
}

const PUBLISH_QOS1 = 0x32;
const PROPERTY = { contentType: 0x03, correlationData: 0x09, userProperty: 0x26 } as const;
/** MQTT's largest Remaining Length (four bytes of variable byte integer). */
const MAX_REMAINING = 268_435_455;
const MAX_STRING = 0xffff;

function varintLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function stringBytes(s: string): number {
  const n = Buffer.byteLength(s);
  if (n > MAX_STRING) throw new RangeError(`MQTT string of ${n} bytes (at most ${MAX_STRING})`);
  return n;
}

function propertiesLength(p: Qos1Publish, o: PublishBatchOptions): number {
  let n = 5 + stringBytes(o.msgIdProperty) + stringBytes(p.msgId);
  const props = p.props;
  if (!props) return n;
  const user = props.userProperties;
  if (user)
    for (const key in user)
      if (key !== o.msgIdProperty) n += 5 + stringBytes(key) + stringBytes(user[key] as string);
  if (props.correlationData) {
    if (props.correlationData.length > MAX_STRING)
      throw new RangeError(
        `correlation data of ${props.correlationData.length} bytes (at most ${MAX_STRING})`,
      );
    n += 3 + props.correlationData.length;
  }
  if (props.contentType !== undefined) n += 3 + stringBytes(props.contentType);
  return n;
}

/** The Remaining Length of one packet (§2.1.4); its properties' length goes to `sizes` for the writer. */
function remainingLength(
  p: Qos1Publish,
  o: PublishBatchOptions,
  prefixBytes: number,
  sizes: number[],
): number {
  const topic = prefixBytes + Buffer.byteLength(p.topic);
  if (topic > MAX_STRING) throw new RangeError(`topic of ${topic} bytes (at most ${MAX_STRING})`);
  let remaining = 2 + topic + 2 + p.payload.length;
  if (o.protocolVersion === 5) {
    const properties = propertiesLength(p, o);
    sizes.push(properties);
    remaining += varintLength(properties) + properties;
  }
  if (remaining > MAX_REMAINING) throw new RangeError(`PUBLISH of ${remaining} bytes is too large for MQTT`);
  sizes.push(remaining);
  return 1 + varintLength(remaining) + remaining;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  let v = n;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    buf[at++] = byte;
  } while (v > 0);
  return at;
}

function writeString(buf: Buffer, at: number, s: string): number {
  const n = buf.write(s, at + 2);
  buf.writeUInt16BE(n, at);
  return at + 2 + n;
}

function writeUserProperty(buf: Buffer, at: number, key: string, value: string): number {
  buf[at] = PROPERTY.userProperty;
  return writeString(buf, writeString(buf, at + 1, key), value);
}

function writeOne(
  buf: Buffer,
  start: number,
  p: Qos1Publish,
  packetId: number,
  o: PublishBatchOptions,
  remaining: number,
  properties: number,
): number {
  let at = start;
  buf[at++] = PUBLISH_QOS1;
  at = writeVarint(buf, at, remaining);
  const topicAt = at;
  at += 2;
  at += buf.write(o.prefix, at);
  at += buf.write(p.topic, at);
  buf.writeUInt16BE(at - topicAt - 2, topicAt);
  buf.writeUInt16BE(packetId, at);
  at += 2;
  if (o.protocolVersion === 5) {
    at = writeVarint(buf, at, properties);
    const props = p.props;
    const user = props?.userProperties;
    if (user)
      for (const key in user)
        if (key !== o.msgIdProperty) at = writeUserProperty(buf, at, key, user[key] as string);
    at = writeUserProperty(buf, at, o.msgIdProperty, p.msgId);
    if (props?.correlationData) {
      buf[at] = PROPERTY.correlationData;
      buf.writeUInt16BE(props.correlationData.length, at + 1);
      at += 3 + props.correlationData.copy(buf, at + 3);
    }
    if (props?.contentType !== undefined) {
      buf[at] = PROPERTY.contentType;
      at = writeString(buf, at + 1, props.contentType);
    }
  }
  at += p.payload.copy(buf, at);
  return at;
}

/**
 * The packets, back to back in one buffer, `packetIds[i]` numbering `packets[i]`. Throws RangeError for a packet
 * MQTT cannot carry (a string over 64 KiB, a packet over 256 MiB): the caller encodes that one alone to find it.
 */
export function encodeQos1Publishes(
  packets: readonly Qos1Publish[],
  packetIds: readonly number[],
  o: PublishBatchOptions,
): Buffer {
  const prefixBytes = Buffer.byteLength(o.prefix);
  const sizes: number[] = [];
  let total = 0;
  for (const p of packets) total += remainingLength(p, o, prefixBytes, sizes);
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  let s = 0;
  const v5 = o.protocolVersion === 5;
  for (let i = 0; i < packets.length; i++) {
    const properties = v5 ? (sizes[s++] as number) : 0;
    const remaining = sizes[s++] as number;
    at = writeOne(buf, at, packets[i] as Qos1Publish, packetIds[i] as number, o, remaining, properties);
  }
  return buf;
}
