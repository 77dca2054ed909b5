import { generate, type Packet, parser } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { decode, decodePublish, frameLength, MALFORMED, PARTIAL } from '../../../src/broker/core/framing.js';

describe('broker core framing', () => {
  const good = generate(
    {
      cmd: 'publish',
      topic: 'a/b',
      payload: Buffer.from('x'),
      qos: 1,
      messageId: 3,
      dup: false,
      retain: false,
    },
    { protocolVersion: 4 },
  );

  it('reads a frame length from the fixed header alone', () => {
    expect(frameLength(good, 0)).toBe(good.length);
    expect(frameLength(Buffer.from([0x32, 0x80, 0x80, 0x80, 0x60]), 0)).toBe(1 + 4 + 0x60 * 128 ** 3);
    expect(frameLength(Buffer.from([0x32, 0x80]), 0)).toBe(PARTIAL);
    expect(frameLength(Buffer.from([0x32, 0xff, 0xff, 0xff, 0xff, 0x7f]), 0)).toBe(MALFORMED);
  });

  it('decodes a good frame after a malformed one (the parser is shared by every connection)', () => {
    const bad = decode(Buffer.from([0x30, 0x04, 0x00, 0x40, 0x61, 0x62]), 4);
    expect(bad).toBeInstanceOf(Error);
    for (let i = 0; i < 2; i++)
      expect(decode(good, 4)).toMatchObject({ cmd: 'publish', topic: 'a/b', messageId: 3 });
  });

  /** What a parser of mqtt-packet's own, fresh for the frame, makes of it: the packet, or the error. */
  function reference(frame: Buffer, version: number): Packet | Error {
    const p = parser({ protocolVersion: version });
    let out: Packet | Error = new Error('incomplete packet');
    p.on('packet', (packet) => {
      out = packet;
    });
    p.on('error', (err) => {
      out = err;
    });
    p.parse(frame);
    return out;
  }

  const plain = (x: unknown) => JSON.parse(JSON.stringify(x));

  it('decodes a PUBLISH without properties as mqtt-packet does, field for field, and itself', () => {
    const topics = ['devices/d1/telemetry/t', '', 'ä/€/𝄞', 't'.repeat(300)];
    const payloads = [0, 1, 80, 127, 128, 16_383, 16_384, 2_097_152].map((n) => Buffer.alloc(n, n % 251));
    let cases = 0;
    for (const version of [4, 5])
      for (const qos of [0, 1] as const)
        for (const flags of [0, 1, 2, 3])
          for (const topic of topics)
            for (const payload of payloads) {
              const frame = generate(
                {
                  cmd: 'publish',
                  topic,
                  payload,
                  qos,
                  retain: (flags & 1) !== 0,
                  dup: (flags & 2) !== 0,
                  ...(qos === 1 ? { messageId: 1 + cases } : {}),
                },
                { protocolVersion: version },
              );
              const ours = decodePublish(frame, version);
              // Decoded here, not by mqtt-packet (which makes Packet instances).
              expect(Object.getPrototypeOf(ours)).toBe(Object.prototype);
              const theirs = reference(frame, version) as Packet & { payload: Buffer };
              expect({ ...ours, payload: undefined }).toEqual({ ...theirs, payload: undefined });
              expect(Object.keys(ours)).toEqual(Object.keys(theirs));
              expect((ours as { payload: Buffer }).payload.equals(theirs.payload)).toBe(true);
              cases++;
            }
    expect(cases).toBe(2 * 2 * 4 * topics.length * payloads.length);
  });

  it('leaves to mqtt-packet a PUBLISH with MQTT 5 properties, and the malformed ones, with the same answers', () => {
    const withProps = generate(
      {
        cmd: 'publish',
        topic: 'a',
        payload: Buffer.from('p'),
        qos: 1,
        messageId: 7,
        retain: false,
        dup: false,
        properties: { contentType: 'text/plain', userProperties: { k: 'v' } },
      },
      { protocolVersion: 5 },
    );
    const decoded = decodePublish(withProps, 5);
    expect(Object.getPrototypeOf(decoded)).not.toBe(Object.prototype);
    expect(plain(decoded)).toEqual(plain(reference(withProps, 5)));
    const frames: [Buffer, number][] = [
      [Buffer.from([0x30, 0x01, 0x00]), 4], // topic length cut short
      [Buffer.from([0x30, 0x03, 0x00, 0x05, 0x61]), 4], // topic longer than the packet
      [Buffer.from([0x32, 0x03, 0x00, 0x01, 0x61]), 4], // QoS 1 without its packet id
      [Buffer.from([0x32, 0x04, 0x00, 0x01, 0x61, 0x00]), 4], // packet id cut short
      [Buffer.from([0x30, 0x03, 0x00, 0x01, 0x61]), 5], // MQTT 5 without a property length
      [Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]), 4], // QoS 3
    ];
    for (const [frame, version] of frames) {
      const ours = decodePublish(frame, version);
      const theirs = reference(frame, version);
      if (theirs instanceof Error) expect(String(ours)).toBe(String(theirs));
      else expect(plain(ours)).toEqual(plain(theirs));
    }
    // And the shared parser is left clean for the next frame.
    expect(decodePublish(good, 4)).toMatchObject({ cmd: 'publish', topic: 'a/b', messageId: 3 });
  });
});
