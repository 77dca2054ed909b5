/** A simulated energy meter's answers to Modbus requests: PDU in, PDU out (the transport frames them). */
export interface MeterModel {
  vendor: string;
  productCode: string;
  revision: string;
  /** Holding registers from address 0. */
  registers: number[];
  /** When false the meter refuses Read Device Identification (illegal function), as many old meters do. */
  identification: boolean;
}

const exception = { illegalFunction: 1, illegalAddress: 2, illegalValue: 3 } as const;

export function answer(meter: MeterModel, pdu: Buffer): Buffer {
  const fc = pdu[0] ?? 0;
  if (fc === 0x03 && pdu.length === 5) return readHolding(meter, pdu.readUInt16BE(1), pdu.readUInt16BE(3));
  if (fc === 0x2b && pdu[1] === 0x0e && pdu.length === 4 && meter.identification) return identify(meter, pdu);
  return refuse(fc, exception.illegalFunction);
}

function refuse(fc: number, code: number): Buffer {
  return Buffer.from([(fc | 0x80) & 0xff, code]);
}

function readHolding(meter: MeterModel, address: number, count: number): Buffer {
  if (count < 1 || count > 125) return refuse(0x03, exception.illegalValue);
  if (address + count > meter.registers.length) return refuse(0x03, exception.illegalAddress);
  const reply = Buffer.alloc(2 + count * 2);
  reply[0] = 0x03;
  reply[1] = count * 2;
  for (let i = 0; i < count; i++)
    reply.writeUInt16BE((meter.registers[address + i] ?? 0) & 0xffff, 2 + i * 2);
  return reply;
}

/** Basic stream (code 1) or one object (code 4); conformity 0x01, everything in one reply. */
function identify(meter: MeterModel, pdu: Buffer): Buffer {
  const code = pdu[2];
  const objects = [meter.vendor, meter.productCode, meter.revision];
  const first = pdu[3] ?? 0;
  if ((code !== 1 && code !== 4) || first > 2) return refuse(0x2b, exception.illegalAddress);
  const ids = code === 4 ? [first] : [0, 1, 2].filter((id) => id >= first);
  const parts = ids.map((id) => {
    const text = Buffer.from((objects[id] ?? '').slice(0, 64), 'latin1');
    return Buffer.concat([Buffer.from([id, text.length]), text]);
  });
  return Buffer.concat([Buffer.from([0x2b, 0x0e, code, 0x01, 0x00, 0x00, ids.length]), ...parts]);
}
