import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firstList, startStub } from '../helpers/modbusPeers.js';

type Stub = Awaited<ReturnType<typeof startStub>>;
/** Given a request's transaction id, unit id and PDU, what the stub writes back (undefined: nothing). */
type Answer = (tx: number, unit: number, pdu: Buffer) => Buffer | undefined;

function adu(tx: number, unit: number, pdu: Buffer, length = pdu.length + 1): Buffer {
  const header = Buffer.alloc(7);
  header.writeUInt16BE(tx, 0);
  header.writeUInt16BE(length, 4);
  header.writeUInt8(unit, 6);
  return Buffer.concat([header, pdu]);
}

function identity(vendor: string): Buffer {
  const objects = [vendor, 'P-1', '1.0'].map((text, id) =>
    Buffer.concat([Buffer.from([id, Buffer.byteLength(text, 'latin1')]), Buffer.from(text, 'latin1')]),
  );
  return Buffer.concat([Buffer.from([0x2b, 0x0e, 0x01, 0x01, 0x00, 0x00, 3]), ...objects]);
}

/** A well-behaved unit, so each endpoint shows what the handler does with its other units. */
const goodReply = (pdu: Buffer): Buffer =>
  pdu[0] === 0x2b ? identity('Good') : Buffer.from([0x03, 0x02, 0x00, 0x2a]);

/** Answers unit 1 as `answer` says and unit 2 well, parsing the MBAP headers it gets. */
function serve(answer: Answer) {
  return (socket: Socket, chunk: Buffer) => {
    for (let at = 0; at + 7 <= chunk.length; ) {
      const tx = chunk.readUInt16BE(at);
      const length = chunk.readUInt16BE(at + 4);
      const unit = chunk.readUInt8(at + 6);
      const pdu = chunk.subarray(at + 7, at + 6 + length);
      at += 6 + length;
      const reply = unit === 1 ? answer(tx, unit, pdu) : adu(tx, unit, goodReply(pdu));
      if (reply) socket.write(reply);
    }
  };
}

const scenarios: Record<string, Answer> = {
  exceptions: (tx, unit, pdu) => adu(tx, unit, Buffer.from([(pdu[0] as number) | 0x80, 0x02])),
  garbage: () => Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'),
  shortPdu: (tx, unit) => adu(tx, unit, Buffer.from([0x2b, 0x0e])),
  hugeLength: (tx, unit) => adu(tx, unit, Buffer.alloc(4), 0xffff),
  objectPastEnd: (tx, unit) => adu(tx, unit, Buffer.from([0x2b, 0x0e, 1, 1, 0, 0, 1, 0, 200, 0x41])),
  wrongUnit: (tx, _unit, pdu) => adu(tx, 77, goodReply(pdu)),
  staleTransaction: (tx, unit, pdu) => adu((tx + 500) & 0xffff, unit, goodReply(pdu)),
  flood: () => Buffer.alloc(1 << 20, 0x41),
  controlBytes: (tx, unit, pdu) =>
    adu(tx, unit, pdu[0] === 0x2b ? identity('Ev\x00il\x1b[2J') : goodReply(pdu)),
};

describe('modbus handler against hostile TCP peers', () => {
  const stubs = new Map<string, Stub>();

  beforeAll(async () => {
    for (const [name, answer] of Object.entries(scenarios)) stubs.set(name, await startStub(serve(answer)));
  });
  afterAll(async () => {
    for (const stub of stubs.values()) await stub.stop();
  });

  it('contains each bad reply to its unit or endpoint, in bounded time, and keeps the good units', async () => {
    const port = (name: string) => (stubs.get(name) as Stub).port;
    const { devices, ms } = await firstList({
      hosts: Object.keys(scenarios).map((name) => `127.0.0.1:${port(name)}`),
      unitIds: [1, 2],
      registers: [{ name: 'level', address: 10 }],
      timeoutMs: 400,
    });
    const found = (name: string) =>
      devices
        .filter((d) => d.properties.MODBUS_PORT === String(port(name)))
        .map((d) => d.properties.MODBUS_UNIT_ID);

    // Exceptions to every request: unit 1 is no device, but the connection stays good for unit 2.
    expect(found('exceptions')).toEqual(['2']);
    // A stale transaction id is a late reply, not garbage: unit 1 times out, unit 2 still answers.
    expect(found('staleTransaction')).toEqual(['2']);
    // Broken framing or a reply that does not fit its request: the endpoint's stream is dropped.
    for (const name of ['garbage', 'shortPdu', 'hugeLength', 'objectPastEnd', 'wrongUnit', 'flood']) {
      expect({ name, units: found(name) }).toEqual({ name, units: [] });
    }
    // Control bytes never reach a property.
    const evil = devices.find((d) => d.properties.MODBUS_PORT === String(port('controlBytes')));
    expect(evil?.properties.MODBUS_VENDOR).toBe('Ev?il?[2J');
    // Endpoints run in parallel: the slowest costs one 400 ms timeout, not the sum of all.
    expect(ms).toBeLessThan(2_000);
  }, 10_000);
});
