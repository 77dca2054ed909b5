import { join } from 'node:path';
import type { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusError, modbusErrorCode } from '../../discovery-handlers/modbus/errors.js';
import { readHoldingRequest } from '../../discovery-handlers/modbus/pdu.js';
import { RtuConnection } from '../../discovery-handlers/modbus/rtuConnection.js';
import { startModbusRtuStub } from '../../firmware-stubs/modbus/rtuServer.js';
import { systemClock } from '../../src/util/clock.js';
import { withCrc16 } from '../../src/util/crc16.js';
import { silentLogger } from '../../src/util/logger.js';
import { firstList, startRtuPeer } from '../helpers/modbusPeers.js';
import { tempDir } from '../helpers/processes.js';

/** What a hostile unit 1 writes back for a request (nothing at all when it returns undefined). */
type Answer = (unitId: number, pdu: Buffer, port: SerialPort) => Buffer | undefined;

// Generous against a loaded machine: the late reply comes 300 ms after unit 1's request timed out and unit 2
// answers 800 ms after it is asked, so a timer that fires late neither lets the late reply count nor times
// out unit 2.
const timeoutMs = 1_500;
const frame = (unitId: number, pdu: Buffer) => withCrc16(Buffer.concat([Buffer.from([unitId]), pdu]));

function identity(vendor: string): Buffer {
  const objects = [vendor, 'P-1', '1.0'].map((text, id) =>
    Buffer.concat([Buffer.from([id, Buffer.byteLength(text, 'latin1')]), Buffer.from(text, 'latin1')]),
  );
  return Buffer.concat([Buffer.from([0x2b, 0x0e, 0x01, 0x01, 0x00, 0x00, 3]), ...objects]);
}

/** A well-behaved unit, so each line shows what the handler does with its other units. */
const goodReply = (pdu: Buffer): Buffer =>
  pdu[0] === 0x2b ? identity('Good') : Buffer.from([0x03, 0x02, 0x00, 0x2a]);

const scenarios: Record<string, Answer> = {
  exceptions: (unit, pdu) => frame(unit, Buffer.from([(pdu[0] as number) | 0x80, 0x02])),
  silence: () => undefined,
  // A reply cut short: no CRC ever comes.
  shortFrame: (unit) => frame(unit, Buffer.from([0x03, 0x02, 0x00, 0x2a])).subarray(0, 4),
  // Unit 1 answers, but only after the master gave up on it: its reply lands while unit 2 (slow on this
  // line) is being asked.
  lateReply: (unit, pdu, port) => {
    setTimeout(() => port.write(frame(unit, goodReply(pdu))), timeoutMs + 300);
    return undefined;
  },
  badCrc: (unit, pdu) => {
    const reply = frame(unit, goodReply(pdu));
    reply[reply.length - 1] = (reply[reply.length - 1] as number) ^ 0xff;
    return reply;
  },
  garbage: () => Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'),
  wrongFunction: (unit) => frame(unit, Buffer.from([0x10, 0x00, 0x00, 0x00, 0x01])),
  oversize: (unit) => frame(unit, Buffer.concat([Buffer.from([0x03, 0xfe]), Buffer.alloc(0xfe)])),
  flood: () => Buffer.alloc(1 << 16, 0x41),
  controlBytes: (unit, pdu) => frame(unit, pdu[0] === 0x2b ? identity('Ev\x00il\x1b[2J') : goodReply(pdu)),
};

/**
 * Unit 1 answers as its scenario says, unit 2 well (after `slowMs`), every other unit not at all (a shared
 * line).
 */
function serve(answer: Answer, slowMs = 0) {
  return (port: SerialPort, unitId: number, pdu: Buffer) => {
    if (unitId === 2) setTimeout(() => port.write(frame(2, goodReply(pdu))), slowMs);
    const reply = unitId === 1 ? answer(unitId, pdu, port) : undefined;
    if (reply) port.write(reply);
  };
}

describe('modbus handler against hostile RTU peers on ptys', () => {
  const dir = tempDir('lb-modbus-rtu-hostile-');
  // Each test has its own peers: a late reply meant for the first test's connection must not land in the
  // second test's scan of the same line.
  const lineOf = (name: string, test: 'typed' | 'scan' = 'scan') => join(dir.path, `${test}-${name}`);
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    for (const [name, answer] of Object.entries(scenarios)) {
      const slowMs = name === 'lateReply' ? 800 : 0;
      for (const test of ['typed', 'scan'] as const)
        stops.push((await startRtuPeer(lineOf(name, test), serve(answer, slowMs))).stop);
    }
    // A sound line beside them: the simulator's meters.
    const meter = { vendor: 'Sim', productCode: 'EM', revision: '1', registers: [230], identification: true };
    const stub = await startModbusRtuStub({
      path: lineOf('good'),
      units: new Map([[1, meter]]),
      logger: silentLogger(),
    });
    stops.push(stub.stop);
  }, 30_000);
  afterAll(async () => {
    for (const stop of stops) await stop();
    dir.remove();
  });

  it('each bad reply fails its request with a typed error', async () => {
    const codes: Record<string, string> = {};
    for (const name of Object.keys(scenarios)) {
      const line = {
        path: lineOf(name, 'typed'),
        baudRate: 9600,
        parity: 'none',
        dataBits: 8,
        stopBits: 1,
      } as const;
      const connection = await RtuConnection.open(line, 2_000, systemClock);
      try {
        await connection.request(1, readHoldingRequest(10, 1), timeoutMs);
        codes[name] = 'answered';
      } catch (err) {
        expect(err).toBeInstanceOf(ModbusError);
        codes[name] = (err as ModbusError).code;
      } finally {
        connection.close();
      }
    }
    expect(codes).toEqual({
      exceptions: 'answered', // an exception response is a reply; the probe reads it as "no such register"
      silence: modbusErrorCode.timeout,
      shortFrame: modbusErrorCode.timeout,
      lateReply: modbusErrorCode.timeout,
      badCrc: modbusErrorCode.malformed,
      garbage: modbusErrorCode.malformed,
      wrongFunction: modbusErrorCode.malformed,
      oversize: modbusErrorCode.malformed,
      flood: modbusErrorCode.malformed,
      controlBytes: 'answered',
    });
  }, 30_000);

  it('contains each to its unit or its line, finishes, and keeps the good units', async () => {
    const names = [...Object.keys(scenarios), 'good'];
    const { devices } = await firstList(
      {
        serialPorts: names.map((name) => ({ path: lineOf(name), baudRate: 9600 })),
        unitIds: [1, 2],
        registers: [{ name: 'level', address: 10 }],
        timeoutMs,
        concurrency: names.length,
      },
      ['/dev/pts/'],
    );
    const found = (name: string) =>
      devices
        .filter((d) => d.properties.MODBUS_SERIAL_PORT === lineOf(name))
        .map((d) => d.properties.MODBUS_UNIT_ID);

    // A unit that refuses, stays silent, breaks off or answers too late is not found; its line stays in use.
    for (const name of ['exceptions', 'silence', 'shortFrame', 'lateReply']) {
      expect({ name, units: found(name) }).toEqual({ name, units: ['2'] });
    }
    // A line whose frames cannot be trusted (CRC, unknown function, too long, noise) is given up this scan.
    for (const name of ['badCrc', 'garbage', 'wrongFunction', 'oversize', 'flood']) {
      expect({ name, units: found(name) }).toEqual({ name, units: [] });
    }
    // Control bytes never reach a property.
    const evil = devices.find((d) => d.properties.MODBUS_SERIAL_PORT === lineOf('controlBytes'));
    expect(evil?.properties.MODBUS_VENDOR).toBe('Ev?il?[2J');
    expect(found('good')).toEqual(['1']);
  }, 30_000);
});
