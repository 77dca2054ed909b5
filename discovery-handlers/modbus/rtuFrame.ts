import { crc16, withCrc16 } from '../../src/util/crc16.js';
import { ModbusError, modbusErrorCode } from './errors.js';
import { functionCode } from './pdu.js';

/** An RTU frame is at most 256 bytes: address, PDU (≤ 253), CRC. */
export const maxRtuFrameBytes = 256;

export { crc16 };

export function encodeRtu(unitId: number, pdu: Buffer): Buffer {
  return withCrc16(Buffer.concat([Buffer.from([unitId]), pdu]));
}

/**
 * RTU has no length field: the length of a reply follows from its function code and the counts inside it.
 * Returns the whole frame's length once it can be known, undefined while more bytes are needed; throws for
 * a function the handler never asked for or a frame longer than RTU allows.
 */
export function rtuFrameLength(buffer: Buffer): number | undefined {
  const fc = buffer[1];
  if (fc === undefined) return undefined;
  let length: number | undefined;
  if (fc & 0x80) length = 5;
  else if (fc === functionCode.readHoldingRegisters)
    length = buffer[2] === undefined ? undefined : 5 + buffer[2];
  else if (fc === functionCode.encapsulated) length = deviceIdLength(buffer);
  else throw new ModbusError(modbusErrorCode.malformed, `RTU reply with function ${fc}`);
  if (length !== undefined && length > maxRtuFrameBytes) {
    throw new ModbusError(modbusErrorCode.malformed, `RTU frame of ${length} bytes`);
  }
  return length;
}

/** unit, 2B, 0E, code, conformity, more, next, count, then count × (id, length, bytes), then CRC. */
function deviceIdLength(buffer: Buffer): number | undefined {
  const count = buffer[7];
  if (count === undefined) return undefined;
  let at = 8;
  for (let i = 0; i < count; i++) {
    const length = buffer[at + 1];
    if (length === undefined) return undefined;
    at += 2 + length;
    if (at > maxRtuFrameBytes) return at;
  }
  return at + 2;
}

/** Checks the CRC and the address of a complete frame; returns its PDU. */
export function openRtu(frame: Buffer, unitId: number): Buffer {
  if (!crcMatches(frame)) throw new ModbusError(modbusErrorCode.malformed, 'RTU frame with a bad CRC');
  if (frame[0] !== unitId)
    throw new ModbusError(modbusErrorCode.malformed, `RTU reply from unit ${frame[0]}`);
  return Buffer.from(frame.subarray(1, frame.length - 2));
}

/** Whether a complete frame's last two bytes are the CRC of the rest. */
export function crcMatches(frame: Buffer): boolean {
  return (
    frame.length >= 4 && crc16(frame.subarray(0, frame.length - 2)) === frame.readUInt16LE(frame.length - 2)
  );
}
