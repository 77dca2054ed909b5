// The bridge's PUBACK tap: whatever the chunking of the upstream's bytes, it takes exactly the PUBACKs the bridge
// claims (a cut one once its bytes are all in), and mqtt.js's parser (mqtt-packet) gets every other packet, as it
// would have.
import { PassThrough } from 'node:stream';
import { generate, type Packet, parser } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { PubackFilter, tapPushes } from '../../../src/sync/pubackTap.js';

/** What mqtt-packet makes of the bytes, packet by packet (an error ends the list). */
function parse(bytes: Buffer, protocolVersion: 4 | 5): (Packet | { error: string })[] {
  const out: (Packet | { error: string })[] = [];
  const p = parser({ protocolVersion });
  p.on('packet', (packet: Packet) => out.push(packet));
  p.on('error', (err: Error) => out.push({ error: err.message }));
  p.parse(bytes);
  return out;
}

/** Runs `bytes` through a filter in the given chunks; returns what it let through and what it took. */
function run(bytes: Buffer, cuts: number[], v5: boolean, ours: Set<number>) {
  const taken: [number, number][] = [];
  const filter = new PubackFilter(v5, (id, code) => {
    if (!ours.has(id)) return false;
    taken.push([id, code]);
    return true;
  });
  const out: Buffer[] = [];
  let from = 0;
  for (const at of [...cuts, bytes.length]) {
    out.push(filter.filter(bytes.subarray(from, at)));
    from = at;
  }
  return { passed: Buffer.concat(out), taken };
}

const v5Stream = (): Buffer =>
  Buffer.concat([
    generate({ cmd: 'connack', reasonCode: 0, sessionPresent: true }, { protocolVersion: 5 }),
    generate({ cmd: 'puback', messageId: 1 }, { protocolVersion: 5 }),
    // Not ours (mqtt.js's status PUBLISH): passed on.
    generate({ cmd: 'puback', messageId: 700 }, { protocolVersion: 5 }),
    generate({ cmd: 'puback', messageId: 2, reasonCode: 0x87 }, { protocolVersion: 5 }),
    // A downstream PUBLISH whose payload looks like PUBACKs.
    generate(
      {
        cmd: 'publish',
        topic: 'lb/edge-1/devices/d1/commands/reboot',
        qos: 1,
        messageId: 9,
        dup: false,
        retain: false,
        payload: Buffer.from([0x40, 2, 0, 3, 0x40, 2, 0, 4]),
      },
      { protocolVersion: 5 },
    ),
    generate({ cmd: 'puback', messageId: 3 }, { protocolVersion: 5 }),
    // Ours, but with properties: left to mqtt.js (the bridge handles it from there).
    generate(
      { cmd: 'puback', messageId: 4, reasonCode: 0x97, properties: { reasonString: 'quota' } },
      { protocolVersion: 5 },
    ),
    generate({ cmd: 'pingresp' }, { protocolVersion: 5 }),
    // A payload long enough for a Remaining Length of two bytes.
    generate(
      {
        cmd: 'publish',
        topic: 't',
        qos: 0,
        dup: false,
        retain: false,
        payload: Buffer.alloc(300, 0x40),
      },
      { protocolVersion: 5 },
    ),
    generate({ cmd: 'puback', messageId: 5 }, { protocolVersion: 5 }),
  ]);

const OURS = new Set([1, 2, 3, 4, 5]);
/** The packets mqtt.js should still see: all but the plain PUBACKs of ours. */
const expectedV5 = () =>
  parse(v5Stream(), 5).filter(
    (p) => !('cmd' in p && p.cmd === 'puback' && [1, 2, 3, 5].includes(p.messageId ?? -1)),
  );

describe('PubackFilter', () => {
  it('takes the plain PUBACKs it is told are ours, in one chunk, and passes every other packet on', () => {
    const bytes = v5Stream();
    const { passed, taken } = run(bytes, [], true, OURS);
    expect(taken).toEqual([
      [1, 0],
      [2, 0x87],
      [3, 0],
      [5, 0],
    ]);
    expect(parse(passed, 5)).toEqual(expectedV5());
  });

  it('whatever the cuts (at each byte, at two bytes close together, one byte a chunk), every packet arrives once, and every PUBACK of ours is taken', () => {
    const bytes = v5Stream();
    const isAck = (p: Packet | { error: string }) => 'cmd' in p && p.cmd === 'puback';
    const others = parse(bytes, 5).filter((p) => !isAck(p));
    const cuttings: number[][] = [Array.from({ length: bytes.length - 1 }, (_, i) => i + 1)];
    for (let a = 1; a < bytes.length; a++) {
      cuttings.push([a]);
      for (const d of [1, 2, 3, 5, 8]) if (a + d < bytes.length) cuttings.push([a, a + d]);
    }
    for (const cuts of cuttings) {
      const { passed, taken } = run(bytes, cuts, true, OURS);
      const packets = parse(passed, 5);
      expect(
        packets.filter((p) => !isAck(p)),
        `cuts ${cuts.join(',')}`,
      ).toEqual(others);
      // The plain PUBACKs of ours are taken, a cut one too (its start held back for the next chunk); the others
      // reach mqtt.js.
      const passedAcks = packets.flatMap((p) => (isAck(p) ? [(p as { messageId: number }).messageId] : []));
      expect(taken).toEqual([
        [1, 0],
        [2, 0x87],
        [3, 0],
        [5, 0],
      ]);
      expect(passedAcks).toEqual([700, 4]);
    }
  });

  it('MQTT 3.1.1: only the two-byte PUBACK is taken; a longer one is malformed and goes to mqtt.js', () => {
    const bytes = Buffer.concat([
      generate({ cmd: 'puback', messageId: 1 }),
      Buffer.from([0x40, 3, 0, 2, 0]),
      generate({ cmd: 'puback', messageId: 3 }),
    ]);
    const { passed, taken } = run(bytes, [], false, new Set([1, 2, 3]));
    expect(taken).toEqual([
      [1, 0],
      [3, 0],
    ]);
    expect(passed).toEqual(Buffer.from([0x40, 3, 0, 2, 0]));
  });

  it('a PUBACK whose flags are set is not taken', () => {
    const bytes = Buffer.from([0x42, 2, 0, 1]);
    expect(run(bytes, [], true, new Set([1])).passed).toEqual(bytes);
  });

  it('after a Remaining Length of more than four bytes every byte goes on unchanged, for mqtt.js to refuse', () => {
    const bad = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
    const after = generate({ cmd: 'puback', messageId: 1 });
    for (const cuts of [[], [4], [7], [10]]) {
      const bytes = Buffer.concat([generate({ cmd: 'puback', messageId: 2 }), bad, after]);
      const { passed, taken } = run(bytes, cuts, true, new Set([1, 2]));
      expect(taken).toEqual([[2, 0]]);
      expect(passed).toEqual(Buffer.concat([bad, after]));
      expect(parse(passed, 5)[0]).toHaveProperty('error');
    }
  });

  it('returns the chunk itself when it takes nothing, and an empty buffer when it takes all', () => {
    const filter = new PubackFilter(true, () => true);
    const ping = generate({ cmd: 'pingresp' });
    expect(filter.filter(ping)).toBe(ping);
    expect(filter.filter(generate({ cmd: 'puback', messageId: 1 })).length).toBe(0);
  });
});

describe('tapPushes', () => {
  it('a reader sees the stream without the PUBACKs taken; a chunk left empty is not pushed', async () => {
    const stream = new PassThrough();
    const taken: number[] = [];
    tapPushes(
      stream,
      new PubackFilter(true, (id) => {
        taken.push(id);
        return id < 100;
      }),
    );
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.write(generate({ cmd: 'puback', messageId: 1 }));
    stream.write(Buffer.concat([generate({ cmd: 'puback', messageId: 2 }), generate({ cmd: 'pingresp' })]));
    stream.write(generate({ cmd: 'puback', messageId: 200 }));
    stream.end();
    await new Promise((resolve) => stream.on('end', resolve));
    expect(taken).toEqual([1, 2, 200]);
    expect(chunks).toEqual([generate({ cmd: 'pingresp' }), generate({ cmd: 'puback', messageId: 200 })]);
  });
});
