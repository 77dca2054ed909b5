import { isIPv4 } from 'node:net';
import type { OnvifFilter, OnvifFilters } from './schema.js';

export interface Cidr {
  network: number;
  mask: number;
}

function ipv4ToInt(address: string): number | undefined {
  if (!isIPv4(address)) return undefined;
  return address.split('.').reduce((acc, part) => (acc << 8) + Number(part), 0) >>> 0;
}

export function parseCidr(text: string): Cidr | undefined {
  const [address = '', bitsText] = text.split('/');
  const ip = ipv4ToInt(address);
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  if (ip === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) return undefined;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { network: (ip & mask) >>> 0, mask };
}

export function cidrContains(cidr: Cidr, address: string): boolean {
  const ip = ipv4ToInt(address);
  return ip !== undefined && (ip & cidr.mask) >>> 0 === cidr.network;
}

/**
 * One camera, however its uuid is written: `urn:uuid:…` (WS-Discovery's and RFC 4122's form; the URN prefix is
 * case-insensitive), `uuid:…` (many cameras), `{…}` (Microsoft's GUID form), bare, upper or lower case.
 */
export function normalizeUuid(value: string): string {
  return value
    .trim()
    .replace(/^(?:urn:)?uuid:/i, '')
    .replace(/^\{([^{}]*)\}$/, '$1')
    .toLowerCase();
}

export function normalizeMac(value: string): string {
  return value.replace(/[^0-9a-f]/gi, '').toLowerCase();
}

type Matcher = (item: string, value: string) => boolean;

const exact: Matcher = (item, value) => item === value;
const caseless: Matcher = (item, value) => item.toLowerCase() === value.toLowerCase();
const uuid: Matcher = (item, value) => normalizeUuid(item) === normalizeUuid(value);
const mac: Matcher = (item, value) => normalizeMac(item) === normalizeMac(value);
const scopePrefix: Matcher = (item, value) =>
  value === item || value.startsWith(item.endsWith('/') ? item : `${item}/`);
const cidr: Matcher = (item, value) => {
  const block = parseCidr(item);
  return block !== undefined && cidrContains(block, value);
};

/** True when the filter lets a camera with these values through. Unknown values (undefined) always pass. */
export function passes(
  filter: OnvifFilter | undefined,
  values: string[] | undefined,
  match: Matcher = exact,
): boolean {
  if (!filter || values === undefined) return true;
  const hit = values.some((value) => filter.items.some((item) => match(item, value)));
  return filter.action === 'include' ? hit : !hit;
}

/** Filters decidable from an announcement alone: uuid, IP address, scopes. */
export function passesAnnouncementFilters(
  filters: OnvifFilters | undefined,
  camera: { uuid: string; ipAddress: string | undefined; scopes: string[] },
): boolean {
  return (
    passes(filters?.uuids, [camera.uuid], uuid) &&
    passes(filters?.ipAddresses, camera.ipAddress === undefined ? [] : [camera.ipAddress], cidr) &&
    passes(filters?.scopes, camera.scopes, scopePrefix)
  );
}

/** Filters that need the camera's answers: MAC, manufacturer, model. */
export function passesDeviceFilters(
  filters: OnvifFilters | undefined,
  device: { macAddress?: string; manufacturer?: string; model?: string },
): boolean {
  const one = (value: string | undefined) => (value === undefined ? undefined : [value]);
  return (
    passes(filters?.macAddresses, one(device.macAddress), mac) &&
    passes(filters?.manufacturers, one(device.manufacturer), caseless) &&
    passes(filters?.models, one(device.model), caseless)
  );
}
