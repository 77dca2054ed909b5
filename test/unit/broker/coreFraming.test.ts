import { generate } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { decode, frameLength, MALFORMED, PARTIAL } from '../../../src/broker/core/framing.js';

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
});
