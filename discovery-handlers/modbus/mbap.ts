import { ModbusError, modbusErrorCode } from './errors.js';

/** MBAP header: transaction id, protocol id (0), length (unit id + PDU), unit id. */
export const mbapHeaderBytes = 7;
/** A PDU is at most 253 bytes, so the length field is at most 254. */
const maxLength = 254;

export function encodeAdu(transactionId: number, unitId: number, pdu: Buffer): Buffer {
  const header = Buffer.alloc(mbapHeaderBytes);
  header.writeUInt16BE(transactionId, 0);
  header.writeUInt16BE(0, 2);
  header.writeUInt16BE(pdu.length + 1, 4);
  header.writeUInt8(unitId, 6);
  return Buffer.concat([header, pdu]);
}

export interface Adu {
  transactionId: number;
  unitId: number;
  pdu: Buffer;
}

/**
 * Takes one frame off the front of `buffer`: the frame and the rest, or undefined while it is incomplete.
 * Throws on a header no Modbus server sends (protocol id not 0, length out of range).
 */
export function takeAdu(buffer: Buffer): { adu: Adu; rest: Buffer } | undefined {
  if (buffer.length < mbapHeaderBytes) return undefined;
  const protocolId = buffer.readUInt16BE(2);
  const length = buffer.readUInt16BE(4);
  if (protocolId !== 0) throw new ModbusError(modbusErrorCode.malformed, `MBAP protocol id ${protocolId}`);
  if (length < 2 || length > maxLength) {
    throw new ModbusError(modbusErrorCode.malformed, `MBAP length ${length}`);
  }
  const end = mbapHeaderBytes - 1 + length;
  if (buffer.length < end) return undefined;
  const adu = {
    transactionId: buffer.readUInt16BE(0),
    unitId: buffer.readUInt8(6),
    pdu: Buffer.from(buffer.subarray(mbapHeaderBytes, end)),
  };
  return { adu, rest: buffer.subarray(end) };
}
