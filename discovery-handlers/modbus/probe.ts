import { ModbusError, modbusErrorCode } from './errors.js';
import {
  checkReply,
  deviceIdObject,
  parseDeviceIdReply,
  parseHoldingReply,
  readDeviceIdRequest,
  readHoldingRequest,
} from './pdu.js';
import type { ModbusRegister } from './schema.js';
import type { ModbusTransport } from './tcpConnection.js';

export interface UnitIdentity {
  vendor?: string;
  productCode?: string;
  revision?: string;
}

export type UnitProbe =
  | { found: true; identity: UnitIdentity; registers: Record<string, string> }
  /** `fatal`: the connection is no longer usable (garbage, closed), so the endpoint's other units are skipped. */
  | { found: false; reason: string; fatal: boolean };

/** A unit that could not fit the basic stream in a few replies is not worth more round trips. */
const maxIdPages = 4;

/**
 * Asks one unit who it is (43/14 basic stream), then reads the configured holding registers. A unit is
 * found when either answers. A timeout ends the probe of this unit (a silent unit would only time out
 * again); an exception to 43/14 falls back to the registers.
 */
export async function probeUnit(
  transport: ModbusTransport,
  unitId: number,
  registers: readonly ModbusRegister[],
  timeoutMs: number,
): Promise<UnitProbe> {
  let identity: UnitIdentity | undefined;
  try {
    identity = await readIdentity(transport, unitId, timeoutMs);
  } catch (err) {
    if (!(err instanceof ModbusError) || err.code !== modbusErrorCode.exception) return notFound(err);
  }
  const values: Record<string, string> = {};
  for (const register of registers) {
    try {
      values[register.name] = (await readRegisters(transport, unitId, register, timeoutMs)).join(',');
    } catch (err) {
      if (!(err instanceof ModbusError) || err.code !== modbusErrorCode.exception) return notFound(err);
    }
  }
  if (!identity && Object.keys(values).length === 0) {
    return { found: false, reason: 'exception to every request', fatal: false };
  }
  return { found: true, identity: identity ?? {}, registers: values };
}

function notFound(err: unknown): UnitProbe {
  const code = err instanceof ModbusError ? err.code : undefined;
  const fatal = code === modbusErrorCode.malformed || code === modbusErrorCode.connection;
  return { found: false, reason: err instanceof Error ? err.message : String(err), fatal };
}

async function readIdentity(
  transport: ModbusTransport,
  unitId: number,
  timeoutMs: number,
): Promise<UnitIdentity> {
  const objects = new Map<number, string>();
  let next: number | undefined = deviceIdObject.vendorName;
  for (let page = 0; page < maxIdPages && next !== undefined; page++) {
    const request = readDeviceIdRequest(next);
    const reply = await transport.request(unitId, request, timeoutMs);
    checkReply(request, reply);
    const parsed = parseDeviceIdReply(reply);
    for (const [id, value] of parsed.objects) objects.set(id, value);
    next = parsed.nextObject !== undefined && parsed.nextObject > next ? parsed.nextObject : undefined;
  }
  const identity: UnitIdentity = {};
  const vendor = objects.get(deviceIdObject.vendorName);
  const productCode = objects.get(deviceIdObject.productCode);
  const revision = objects.get(deviceIdObject.revision);
  if (vendor) identity.vendor = vendor;
  if (productCode) identity.productCode = productCode;
  if (revision) identity.revision = revision;
  return identity;
}

async function readRegisters(
  transport: ModbusTransport,
  unitId: number,
  register: ModbusRegister,
  timeoutMs: number,
): Promise<number[]> {
  const count = register.count ?? 1;
  const request = readHoldingRequest(register.address, count);
  const reply = await transport.request(unitId, request, timeoutMs);
  checkReply(request, reply);
  return parseHoldingReply(reply, count);
}
