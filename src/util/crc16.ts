/**
 * CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), the check of a Modbus RTU frame, which
 * carries it low byte first. Here because both the modbus handler and its firmware stub frame RTU.
 */
export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** `body` with its CRC-16/MODBUS appended, low byte first: a whole RTU frame. */
export function withCrc16(body: Buffer): Buffer {
  const crc = Buffer.alloc(2);
  crc.writeUInt16LE(crc16(body), 0);
  return Buffer.concat([body, crc]);
}
