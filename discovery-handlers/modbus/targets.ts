import { ConfigError } from '../../src/util/errors.js';
import { type ModbusDetails, type ModbusRegister, maxEndpoints, modbusDefaults } from './schema.js';

export interface Endpoint {
  host: string;
  port: number;
}

export interface SerialLine {
  path: string;
  baudRate: number;
  parity: 'none' | 'even' | 'odd';
  dataBits: 7 | 8;
  stopBits: 1 | 2;
}

export interface ModbusSettings {
  endpoints: Endpoint[];
  serialLines: SerialLine[];
  unitIds: number[];
  registers: ModbusRegister[];
  timeoutMs: number;
  concurrency: number;
  scanTimeoutMs: number;
  rescanIntervalMs: number;
}

/** Expands hosts, the range and the unit ids; throws a ConfigError naming every problem. */
export function resolveSettings(details: ModbusDetails): ModbusSettings {
  const problems: string[] = [];
  const port = details.port ?? modbusDefaults.port;
  const endpoints: Endpoint[] = [];
  for (const [i, entry] of (details.hosts ?? []).entries()) {
    const endpoint = parseHost(entry, port);
    if (endpoint) endpoints.push(endpoint);
    else problems.push(`details.hosts[${i}]: not host or host:port: ${entry}`);
  }
  if (details.cidr !== undefined) {
    const range = expandCidr(details.cidr);
    if (typeof range === 'string') problems.push(`details.cidr: ${range}`);
    else endpoints.push(...range.map((host) => ({ host, port })));
  }
  const serialLines: SerialLine[] = (details.serialPorts ?? []).map((line) => ({
    path: line.path,
    baudRate: line.baudRate ?? modbusDefaults.baudRate,
    parity: line.parity ?? modbusDefaults.parity,
    dataBits: line.dataBits === 7 ? 7 : 8,
    stopBits: line.stopBits === 2 ? 2 : 1,
  }));
  if (endpoints.length === 0 && serialLines.length === 0)
    problems.push('details: give hosts, cidr or serialPorts');
  if (endpoints.length > maxEndpoints)
    problems.push(`details: ${endpoints.length} endpoints, at most ${maxEndpoints}`);
  const unitIds = new Set(details.unitIds ?? (details.unitIdRange ? [] : modbusDefaults.unitIds));
  const range = details.unitIdRange;
  if (range && range.first > range.last) problems.push('details.unitIdRange: first is after last');
  else if (range) for (let u = range.first; u <= range.last; u++) unitIds.add(u);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    endpoints: dedupe(endpoints),
    serialLines,
    unitIds: [...unitIds].sort((a, b) => a - b),
    registers: details.registers ?? [],
    timeoutMs: details.timeoutMs ?? modbusDefaults.timeoutMs,
    concurrency: details.concurrency ?? modbusDefaults.concurrency,
    scanTimeoutMs: details.scanTimeoutMs ?? modbusDefaults.scanTimeoutMs,
    rescanIntervalMs: details.rescanIntervalMs ?? modbusDefaults.rescanIntervalMs,
  };
}

export function parseHost(entry: string, defaultPort: number): Endpoint | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(entry);
  if (!match) return undefined;
  const port = match[3] === undefined ? defaultPort : Number(match[3]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: (match[1] ?? match[2]) as string, port };
}

/** The addresses of an IPv4 range, without network and broadcast addresses for ranges larger than /31. */
export function expandCidr(cidr: string): string[] | string {
  const [address = '', bitsText = ''] = cidr.split('/');
  const octets = address.split('.').map(Number);
  const bits = Number(bitsText);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o > 255))
    return `bad address ${address}`;
  if (!Number.isInteger(bits) || bits > 32) return `bad prefix length ${bitsText}`;
  const size = 2 ** (32 - bits);
  if (size > maxEndpoints * 4) return `/${bits} is larger than ${maxEndpoints} addresses`;
  const base =
    (octets.reduce((n, o) => n * 256 + o, 0) - (octets.reduce((n, o) => n * 256 + o, 0) % size)) >>> 0;
  const first = size > 2 ? 1 : 0;
  const last = size > 2 ? size - 2 : size - 1;
  const hosts: string[] = [];
  for (let i = first; i <= last; i++) hosts.push(ipv4(base + i));
  return hosts;
}

function ipv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

function dedupe(endpoints: Endpoint[]): Endpoint[] {
  const seen = new Map(endpoints.map((e) => [endpointUrl(e), e]));
  return [...seen.values()];
}

export function endpointUrl({ host, port }: Endpoint): string {
  return host.includes(':') ? `tcp://[${host}]:${port}` : `tcp://${host}:${port}`;
}
