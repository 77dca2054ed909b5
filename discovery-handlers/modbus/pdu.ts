import { ModbusError, modbusErrorCode } from './errors.js';

/** Function codes the handler sends: 3 read holding registers, 43 encapsulated interface (MEI 14). */
export const functionCode = { readHoldingRegisters: 0x03, encapsulated: 0x2b } as const;
const meiReadDeviceId = 0x0e;
/** Read Device Identification, basic stream: objects 0 VendorName, 1 ProductCode, 2 MajorMinorRevision. */
const basicStream = 0x01;

export const deviceIdObject = { vendorName: 0, productCode: 1, revision: 2 } as const;

export function readDeviceIdRequest(firstObject: number): Buffer {
  return Buffer.from([functionCode.encapsulated, meiReadDeviceId, basicStream, firstObject]);
}

export function readHoldingRequest(address: number, count: number): Buffer {
  const pdu = Buffer.alloc(5);
  pdu.writeUInt8(functionCode.readHoldingRegisters, 0);
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(count, 3);
  return pdu;
}

function malformed(message: string): ModbusError {
  return new ModbusError(modbusErrorCode.malformed, message);
}

/** Throws the unit's exception response as a ModbusError, and any reply to another function as malformed. */
export function checkReply(request: Buffer, reply: Buffer): void {
  const sent = request[0] as number;
  const got = reply[0];
  if (got === (sent | 0x80)) {
    const exceptionCode = reply[1];
    if (reply.length !== 2 || exceptionCode === undefined)
      throw malformed('exception response of wrong length');
    throw new ModbusError(modbusErrorCode.exception, `exception ${exceptionCode} to function ${sent}`, {
      exceptionCode,
    });
  }
  if (got !== sent) throw malformed(`reply to function ${got} for a request of function ${sent}`);
}

export function parseHoldingReply(reply: Buffer, count: number): number[] {
  const byteCount = reply[1];
  if (byteCount !== count * 2 || reply.length !== 2 + byteCount) {
    throw malformed(`holding-register reply of ${reply.length} bytes for ${count} registers`);
  }
  return Array.from({ length: count }, (_, i) => reply.readUInt16BE(2 + i * 2));
}

export interface DeviceIdPage {
  objects: Map<number, string>;
  /** The object to ask for next when the unit could not fit all in one reply. */
  nextObject?: number;
}

/** Parses one Read Device Identification reply; every length is checked against the bytes present. */
export function parseDeviceIdReply(reply: Buffer): DeviceIdPage {
  if (reply.length < 7 || reply[1] !== meiReadDeviceId) throw malformed('short device identification reply');
  const moreFollows = reply[4] === 0xff;
  const nextObject = reply[5] as number;
  const count = reply[6] as number;
  const objects = new Map<number, string>();
  let at = 7;
  for (let i = 0; i < count; i++) {
    const id = reply[at];
    const length = reply[at + 1];
    if (id === undefined || length === undefined || at + 2 + length > reply.length) {
      throw malformed(`device identification object ${i} runs past the reply`);
    }
    objects.set(id, printable(reply.subarray(at + 2, at + 2 + length)));
    at += 2 + length;
  }
  if (at !== reply.length) throw malformed('trailing bytes after the device identification objects');
  return moreFollows ? { objects, nextObject } : { objects };
}

/** Objects are ASCII strings; anything else is replaced so a property never carries control bytes. */
function printable(bytes: Buffer): string {
  return bytes
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
}
