import { describe, expect, it } from 'vitest';
import { ModbusError, modbusErrorCode } from '../../discovery-handlers/modbus/errors.js';
import { encodeAdu, takeAdu } from '../../discovery-handlers/modbus/mbap.js';
import {
  checkReply,
  parseDeviceIdReply,
  parseHoldingReply,
  readHoldingRequest,
} from '../../discovery-handlers/modbus/pdu.js';
import { crc16, encodeRtu, openRtu, rtuFrameLength } from '../../discovery-handlers/modbus/rtuFrame.js';
import { expandCidr, parseHost, resolveSettings } from '../../discovery-handlers/modbus/targets.js';

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as ModbusError).code;
  }
  return 'no error';
};

describe('MBAP framing', () => {
  it('round-trips a frame and waits for the rest of a split one', () => {
    const frame = encodeAdu(0x1234, 7, Buffer.from([0x03, 0x00, 0x01, 0x00, 0x02]));
    expect([...frame.subarray(0, 7)]).toEqual([0x12, 0x34, 0, 0, 0, 6, 7]);
    expect(takeAdu(frame.subarray(0, 9))).toBeUndefined();
    const taken = takeAdu(Buffer.concat([frame, Buffer.from([9])]));
    expect(taken?.adu).toEqual({ transactionId: 0x1234, unitId: 7, pdu: frame.subarray(7) });
    expect([...(taken?.rest ?? [])]).toEqual([9]);
  });

  it('refuses a header no server sends before its body arrives', () => {
    const header = (protocol: number, length: number) => {
      const b = Buffer.alloc(7);
      b.writeUInt16BE(protocol, 2);
      b.writeUInt16BE(length, 4);
      return b;
    };
    expect(codeOf(() => takeAdu(header(0, 0xffff)))).toBe(modbusErrorCode.malformed);
    expect(codeOf(() => takeAdu(header(0, 1)))).toBe(modbusErrorCode.malformed);
    expect(codeOf(() => takeAdu(header(1, 6)))).toBe(modbusErrorCode.malformed);
    expect(takeAdu(header(0, 254))).toBeUndefined();
  });
});

describe('PDUs', () => {
  const request = readHoldingRequest(10, 2);

  it('reads registers and checks the byte count against the request', () => {
    expect([...request]).toEqual([3, 0, 10, 0, 2]);
    expect(parseHoldingReply(Buffer.from([3, 4, 0, 1, 0xff, 0xff]), 2)).toEqual([1, 65535]);
    expect(codeOf(() => parseHoldingReply(Buffer.from([3, 4, 0, 1]), 2))).toBe(modbusErrorCode.malformed);
    expect(codeOf(() => parseHoldingReply(Buffer.from([3, 2, 0, 1]), 2))).toBe(modbusErrorCode.malformed);
  });

  it('turns an exception response into an error with its code, and another function into malformed', () => {
    let thrown: unknown;
    try {
      checkReply(request, Buffer.from([0x83, 0x02]));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ModbusError);
    expect(thrown).toMatchObject({ code: modbusErrorCode.exception, exceptionCode: 2 });
    expect(codeOf(() => checkReply(request, Buffer.from([0x04, 0x00])))).toBe(modbusErrorCode.malformed);
    expect(codeOf(() => checkReply(request, Buffer.from([0x83])))).toBe(modbusErrorCode.malformed);
  });

  it('parses device identification objects, their paging, and refuses lengths past the end', () => {
    const reply = Buffer.from([0x2b, 0x0e, 1, 1, 0xff, 2, 2, 0, 2, 0x41, 0x42, 1, 1, 0x07]);
    const page = parseDeviceIdReply(reply);
    expect([...page.objects]).toEqual([
      [0, 'AB'],
      [1, '?'],
    ]);
    expect(page.nextObject).toBe(2);
    expect(codeOf(() => parseDeviceIdReply(reply.subarray(0, 12)))).toBe(modbusErrorCode.malformed);
    expect(codeOf(() => parseDeviceIdReply(Buffer.concat([reply, Buffer.from([0])])))).toBe(
      modbusErrorCode.malformed,
    );
  });
});

describe('targets', () => {
  it('expands a range without network and broadcast addresses, and refuses one too large', () => {
    const hosts = expandCidr('10.1.2.77/30');
    expect(hosts).toEqual(['10.1.2.77', '10.1.2.78']);
    expect((expandCidr('192.168.0.0/22') as string[]).length).toBe(1022);
    expect(expandCidr('10.0.0.0/8')).toMatch(/larger than/);
    expect(expandCidr('10.0.0.300/24')).toMatch(/bad address/);
  });

  it('parses host, host:port and [v6]:port', () => {
    expect(parseHost('plc.local', 502)).toEqual({ host: 'plc.local', port: 502 });
    expect(parseHost('10.0.0.5:1502', 502)).toEqual({ host: '10.0.0.5', port: 1502 });
    expect(parseHost('[::1]:5020', 502)).toEqual({ host: '::1', port: 5020 });
    expect(parseHost('a:b:c', 502)).toBeUndefined();
    expect(parseHost('h:99999', 502)).toBeUndefined();
  });

  it('merges unit ids with a range and names every problem at once', () => {
    const s = resolveSettings({ hosts: ['h', 'h:502'], unitIds: [5, 1], unitIdRange: { first: 3, last: 5 } });
    expect(s.endpoints).toEqual([{ host: 'h', port: 502 }]);
    expect(s.unitIds).toEqual([1, 3, 4, 5]);
    expect(() => resolveSettings({ hosts: ['a:b:c'], cidr: '10.0.0.0/8' })).toThrow(/hosts\[0\][\s\S]*cidr/);
  });
});

describe('RTU frames', () => {
  it('computes CRC-16/MODBUS (check value of "123456789" is 0x4B37) and appends it low byte first', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x4b37);
    // Read holding register 0 of unit 1, as every Modbus tool writes it: 01 03 00 00 00 01 84 0A.
    expect(encodeRtu(1, readHoldingRequest(0, 1)).toString('hex')).toBe('010300000001840a');
  });

  it('knows a reply’s length from its function and counts, and refuses what it never asked for', () => {
    expect(rtuFrameLength(Buffer.from([1]))).toBeUndefined();
    expect(rtuFrameLength(Buffer.from([1, 0x83]))).toBe(5);
    expect(rtuFrameLength(Buffer.from([1, 3]))).toBeUndefined();
    expect(rtuFrameLength(Buffer.from([1, 3, 4]))).toBe(9);
    expect(rtuFrameLength(Buffer.from([1, 0x2b, 0x0e, 1, 1, 0, 0, 1, 0]))).toBeUndefined();
    expect(rtuFrameLength(Buffer.from([1, 0x2b, 0x0e, 1, 1, 0, 0, 1, 0, 2, 0x41, 0x42]))).toBe(14);
    expect(codeOf(() => rtuFrameLength(Buffer.from([1, 0x10])))).toBe(modbusErrorCode.malformed);
    expect(codeOf(() => rtuFrameLength(Buffer.from([1, 3, 255])))).toBe(modbusErrorCode.malformed);
  });

  it('checks CRC and address before handing out the PDU', () => {
    const frame = encodeRtu(5, Buffer.from([3, 2, 0, 7]));
    expect([...openRtu(frame, 5)]).toEqual([3, 2, 0, 7]);
    expect(codeOf(() => openRtu(frame, 6))).toBe(modbusErrorCode.malformed);
    const corrupt = Buffer.from(frame);
    corrupt[4] = 8;
    expect(codeOf(() => openRtu(corrupt, 5))).toBe(modbusErrorCode.malformed);
  });
});
