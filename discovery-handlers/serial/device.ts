import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { Candidate } from './candidates.js';
import { normaliseHexId } from './filter.js';
import type { SerialIdentity } from './sysfs.js';

/**
 * Stable identity: `vendor:product:serial` for a USB port with a serial number (plus `:<interface>` for the
 * second and later ports of a multi-port adapter), else the device node the path resolves to.
 */
export function serialDeviceId(candidate: Candidate, identity: SerialIdentity): string {
  const { vendorId, productId, serialNumber, interfaceNumber } = identity;
  if (!vendorId || !productId || !serialNumber) return candidate.realPath;
  const base = `${normaliseHexId(vendorId)}:${normaliseHexId(productId)}:${serialNumber}`;
  const iface = interfaceNumber?.toLowerCase();
  return iface && Number.parseInt(iface, 16) !== 0 ? `${base}:${iface}` : base;
}

export function toDiscoveredDevice(
  candidate: Candidate,
  identity: SerialIdentity,
  probeReply?: string,
): DiscoveredDevice {
  const properties: Record<string, string> = { SERIAL_DEVICE_PATH: candidate.path };
  const optional: [string, string | undefined][] = [
    ['SERIAL_VENDOR_ID', identity.vendorId && normaliseHexId(identity.vendorId)],
    ['SERIAL_PRODUCT_ID', identity.productId && normaliseHexId(identity.productId)],
    ['SERIAL_SERIAL_NUMBER', identity.serialNumber],
    ['SERIAL_MANUFACTURER', identity.manufacturer],
    ['SERIAL_PRODUCT', identity.product],
    ['SERIAL_PROBE_REPLY', probeReply],
  ];
  for (const [key, value] of optional) if (value !== undefined) properties[key] = value;
  return {
    id: serialDeviceId(candidate, identity),
    properties,
    deviceNodes: [{ hostPath: candidate.realPath, containerPath: candidate.path, permissions: 'rw' }],
  };
}
