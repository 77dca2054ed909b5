// MQTT framing for the core: where a packet ends is read from its fixed header before its body is buffered,
// so an oversized packet is refused from its declared length; a whole frame is then decoded by mqtt-packet, or,
// for the PUBLISH of QoS 0 or 1 without MQTT 5 properties that telemetry is, here.
import { createRequire } from 'node:module';
import type { IPublishPacket, Packet } from 'mqtt-packet';

/** The frame at an offset: its whole length, or what keeps it from being known yet. */
export const PARTIAL = -1;
export const MALFORMED = -2;

/**
 * The length of the frame starting at `at` (fixed header included), PARTIAL while its fixed header is
 * incomplete, MALFORMED when its Remaining Length runs past four bytes ([MQTT-1.5.5-1]).
 */
export function frameLength(buf: Buffer, at: number): number {
  let remaining = 0;
  let multiplier = 1;
  for (let i = 1; i <= 4; i++) {
    const byte = buf[at + i];
    if (byte === undefined) return PARTIAL;
    remaining += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return 1 + i + remaining;
    multiplier *= 128;
  }
  return MALFORMED;
}

/** The packet type of a frame's first byte (1 CONNECT, 3 PUBLISH, 8 SUBSCRIBE, 12 PINGREQ, 14 DISCONNECT...). */
export const packetType = (firstByte: number): number => firstByte >> 4;

export const TYPE = { connect: 1, publish: 3, pingreq: 12, disconnect: 14 } as const;

interface Parser {
  settings: { protocolVersion?: number };
  parse(buf: Buffer): number;
  _resetState(): void;
  _pos: number;
  on(event: 'packet', fn: (p: Packet) => void): void;
  on(event: 'error', fn: (err: Error) => void): void;
}

const require = createRequire(import.meta.url);
const { parser: createParser } = require('mqtt-packet') as { parser: (o?: object) => Parser };

/**
 * One parser for every connection: it is handed one whole frame at a time and answers synchronously, so no
 * connection needs a parser (and its buffer list) of its own. The protocol version is set before each frame;
 * a parsed CONNECT replaces the parser's settings, which the next frame's version overwrites again.
 */
const shared = createParser();
let decoded: Packet | undefined;
let failure: Error | undefined;
shared.on('packet', (p) => {
  decoded = p;
});
shared.on('error', (err) => {
  failure = err;
});
const SETTINGS: Record<number, { protocolVersion: number }> = {
  4: { protocolVersion: 4 },
  5: { protocolVersion: 5 },
};

/** The packet in one whole frame, or an Error saying why it is malformed. */
export function decode(frame: Buffer, version: number): Packet | Error {
  decoded = undefined;
  failure = undefined;
  shared.settings = SETTINGS[version] ?? { protocolVersion: 4 };
  shared.parse(frame);
  const packet = decoded as Packet | undefined;
  if (packet && !failure) return packet;
  // Whatever a bad frame left half-parsed, the next one starts clean (_resetState leaves the read position).
  shared._resetState();
  shared._pos = 0;
  return failure ?? new Error('incomplete packet');
}

/**
 * A PUBLISH frame of QoS 0 or 1: decoded here when it carries no MQTT 5 properties (mqtt-packet's parser costs a
 * buffer list, a dozen `debug` calls and its Packet per message: 6% of the agent's CPU with 3,000 sensors), into
 * what mqtt-packet gives, field for field (test/unit/broker/coreFraming.test.ts compares them); anything else,
 * malformed frames included, goes to mqtt-packet, which says why.
 */
export function decodePublish(frame: Buffer, version: number): Packet | Error {
  const first = frame[0] as number;
  const qos = (first >> 1) & 3;
  if (qos > 1) return decode(frame, version);
  // A whole frame, its Remaining Length checked by frameLength: the body starts after the length's last byte.
  let at = 1;
  while (((frame[at++] as number) & 0x80) !== 0);
  const end = frame.length;
  const length = end - at;
  if (at + 2 > end) return decode(frame, version);
  const topicEnd = at + 2 + frame.readUInt16BE(at);
  const idEnd = qos === 1 ? topicEnd + 2 : topicEnd;
  if (idEnd > end) return decode(frame, version);
  let body = idEnd;
  if (version === 5) {
    if (frame[body] !== 0) return decode(frame, version); // properties, or no property length at all
    body++;
  }
  const packet = {
    cmd: 'publish',
    retain: (first & 1) !== 0,
    qos,
    dup: (first & 8) !== 0,
    length,
    topic: frame.toString('utf8', at + 2, topicEnd),
    payload: frame.subarray(body, end),
  } as IPublishPacket & { length: number };
  if (qos === 1) packet.messageId = frame.readUInt16BE(topicEnd);
  return packet;
}
