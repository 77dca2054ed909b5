import { type IPublishPacket, type Packet, parser } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import {
  encodeQos1Publishes,
  type PublishBatchOptions,
  type Qos1Publish,
} from '../../../src/sync/publishPacket.js';

/** Every packet in `bytes`, as mqtt-packet (the parser mqtt.js and aedes use) reads it. */
function parseAll(bytes: Buffer, protocolVersion: 4 | 5): IPublishPacket[] {
  const p = parser({ protocolVersion });
  const packets: Packet[] = [];
  const errors: Error[] = [];
  p.on('packet', (packet: Packet) => packets.push(packet));
  p.on('error', (err: Error) => errors.push(err));
  const left = p.parse(bytes);
  expect(errors).toEqual([]);
  expect(left).toBe(0);
  expect(packets.every((x) => x.cmd === 'publish')).toBe(true);
  return packets as IPublishPacket[];
}

const base: Qos1Publish = { topic: 'devices/d1/telemetry/t', payload: Buffer.from('hello'), msgId: 'e-1' };
const v4: PublishBatchOptions = {
  protocolVersion: 4,
  prefix: 'leafbridge/edge-1/',
  msgIdProperty: 'lb-msg-id',
};
const v5: PublishBatchOptions = { ...v4, protocolVersion: 5 };

describe('encodeQos1Publishes', () => {
  it('writes MQTT 3.1.1 QoS 1 PUBLISHes back to back, without properties', () => {
    const bytes = encodeQos1Publishes(
      [base, { topic: 'devices/d2/status', payload: Buffer.alloc(0), msgId: 'e-2' }],
      [7, 65535],
      v4,
    );
    const packets = parseAll(bytes, 4);
    expect(packets.map((p) => [p.qos, p.dup, p.retain, p.messageId, p.topic])).toEqual([
      [1, false, false, 7, 'leafbridge/edge-1/devices/d1/telemetry/t'],
      [1, false, false, 65535, 'leafbridge/edge-1/devices/d2/status'],
    ]);
    expect(packets.map((p) => Buffer.from(p.payload).toString())).toEqual(['hello', '']);
    expect(packets[0]?.properties).toBeUndefined();
  });

  it('writes MQTT 5 user properties (the message id last, replacing a device-set one), correlation data and content type', () => {
    const props = {
      userProperties: { unit: '°C', 'lb-msg-id': 'forged', site: 'nord' },
      correlationData: Buffer.from([0, 1, 2, 255]),
      contentType: 'application/json',
    };
    const [p] = parseAll(encodeQos1Publishes([{ ...base, msgId: 'abc-42', props }], [9], v5), 5);
    expect(p?.topic).toBe('leafbridge/edge-1/devices/d1/telemetry/t');
    expect(p?.messageId).toBe(9);
    expect(p?.properties?.userProperties).toEqual({ unit: '°C', site: 'nord', 'lb-msg-id': 'abc-42' });
    expect(p?.properties?.correlationData).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(p?.properties?.contentType).toBe('application/json');
    expect(Buffer.from(p?.payload ?? '').toString()).toBe('hello');
  });

  it('writes the message id alone when there are no other properties, and multi-byte lengths (MQTT 5)', () => {
    const big = Buffer.alloc(300_000, 7);
    const packets = parseAll(
      encodeQos1Publishes([{ ...base, topic: 'devices/ü/telemetry/x', payload: big }, base], [1, 2], v5),
      5,
    );
    expect(packets).toHaveLength(2);
    expect(packets[0]?.topic).toBe('leafbridge/edge-1/devices/ü/telemetry/x');
    expect(Buffer.from(packets[0]?.payload ?? '').equals(big)).toBe(true);
    expect(packets[1]?.messageId).toBe(2);
    expect(packets[1]?.properties).toEqual({ userProperties: { 'lb-msg-id': 'e-1' } });
  });

  it('refuses what MQTT cannot carry', () => {
    expect(() => encodeQos1Publishes([{ ...base, topic: 'x'.repeat(70_000) }], [1], v4)).toThrow(RangeError);
    const props = { correlationData: Buffer.alloc(70_000) };
    expect(() => encodeQos1Publishes([{ ...base, props }], [1], v5)).toThrow(RangeError);
  });
});
