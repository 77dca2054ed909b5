import type { AedesPublishPacket, Client } from 'aedes';
import { generate } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { shapeDelivery, wireSize } from '../../../src/broker/delivery.js';

/** The parts of an aedes client shapeDelivery reads. */
function client(subscriptions: Record<string, { qos: number; si?: number }>, maximumPacketSize?: number) {
  return { subscriptions, maximumPacketSize, version: 5 } as unknown as Client;
}

function message(topic: string, qos: 0 | 1 | 2, payload: Buffer | string = 'x'): AedesPublishPacket {
  return { cmd: 'publish', topic, qos, payload, dup: false, retain: false } as AedesPublishPacket;
}

describe('shapeDelivery: one delivery to one client', () => {
  it('caps the QoS at the highest of the matching subscriptions, wildcards included', () => {
    expect(shapeDelivery(client({ 'a/#': { qos: 1 } }), message('a/b', 2))?.qos).toBe(1);
    expect(shapeDelivery(client({ 'a/#': { qos: 1 }, 'a/+': { qos: 2 } }), message('a/b', 2))?.qos).toBe(2);
    expect(shapeDelivery(client({ 'a/#': { qos: 2 } }), message('a/b', 1))?.qos).toBe(1); // never raised
    expect(shapeDelivery(client({ 'a/#': { qos: 1 } }), message('a/b', 0))?.qos).toBe(0);
  });

  it('carries the identifiers of every matching subscription, and none of a `$` topic matched by `#`', () => {
    const subs = {
      'a/#': { qos: 1, si: 9 },
      'a/+': { qos: 1, si: 2 },
      'a/c': { qos: 1 },
      '#': { qos: 1, si: 5 },
    };
    expect(shapeDelivery(client(subs), message('a/b', 1))?.properties?.subscriptionIdentifier).toEqual([
      2, 5, 9,
    ]);
    expect(shapeDelivery(client(subs), message('x', 1))?.properties?.subscriptionIdentifier).toBe(5);
    expect(shapeDelivery(client(subs), message('$x', 1))?.properties?.subscriptionIdentifier).toBeUndefined();
  });

  it("drops a message larger than the client's Maximum Packet Size", () => {
    const subs = { a: { qos: 1 } };
    const size = wireSize(message('a', 1, Buffer.alloc(100)), 5);
    expect(shapeDelivery(client(subs, size), message('a', 1, Buffer.alloc(100)))).not.toBeNull();
    expect(shapeDelivery(client(subs, size - 1), message('a', 1, Buffer.alloc(100)))).toBeNull();
    expect(shapeDelivery(client(subs), message('a', 1, Buffer.alloc(100_000)))).not.toBeNull(); // no limit set
  });

  it('wireSize is the length mqtt-packet writes, across the remaining-length sizes', () => {
    for (const length of [0, 100, 127, 200, 16_383, 16_400, 2_097_200]) {
      for (const qos of [0, 1] as const) {
        const packet = {
          ...message('t/1', qos, Buffer.alloc(length)),
          properties: { userProperties: { k: 'v' } },
        };
        const written = generate(
          { ...packet, messageId: qos ? 7 : undefined } as Parameters<typeof generate>[0],
          {
            protocolVersion: 5,
          },
        );
        expect([length, qos, wireSize(packet, 5)]).toEqual([length, qos, written.length]);
      }
    }
  });
});
