import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { Clock } from '../../src/util/clock.js';
import type { Logger } from '../../src/util/logger.js';
import { Semaphore } from '../../src/util/semaphore.js';
import { probeUnit, type UnitProbe } from './probe.js';
import { type Endpoint, endpointUrl, type ModbusSettings } from './targets.js';
import { TcpConnection } from './tcpConnection.js';

export interface ScanContext {
  logger: Logger;
  clock: Clock;
  signal: AbortSignal;
}

/**
 * Probes every endpoint's units, `concurrency` endpoints at once, within `scanTimeoutMs`. An endpoint the
 * deadline cut short keeps the devices its last finished probe found, so a large range scanned over
 * several rounds does not flap.
 */
export class ModbusScanner {
  private readonly found = new Map<string, DiscoveredDevice[]>();

  constructor(
    private readonly settings: ModbusSettings,
    private readonly ctx: ScanContext,
  ) {}

  async scan(): Promise<DiscoveredDevice[]> {
    const { clock, signal } = this.ctx;
    const deadline = new AbortController();
    const timer = clock.setTimeout(() => deadline.abort(), this.settings.scanTimeoutMs);
    const stop = AbortSignal.any([signal, deadline.signal]);
    const limit = new Semaphore(this.settings.concurrency);
    try {
      await Promise.all(
        this.settings.endpoints.map((endpoint) =>
          limit.run(async () => {
            if (stop.aborted) return;
            const devices = await this.probeEndpoint(endpoint, stop);
            if (!stop.aborted) this.found.set(endpointUrl(endpoint), devices);
          }),
        ),
      );
    } finally {
      clock.clearTimeout(timer);
    }
    if (deadline.signal.aborted)
      this.ctx.logger.warn({ ms: this.settings.scanTimeoutMs }, 'modbus scan cut short');
    return [...this.found.values()].flat().sort((a, b) => a.id.localeCompare(b.id));
  }

  private async probeEndpoint(endpoint: Endpoint, stop: AbortSignal): Promise<DiscoveredDevice[]> {
    const { timeoutMs, unitIds, registers } = this.settings;
    const url = endpointUrl(endpoint);
    let connection: TcpConnection;
    try {
      connection = await TcpConnection.open(endpoint.host, endpoint.port, timeoutMs, this.ctx.clock);
    } catch (err) {
      this.ctx.logger.debug({ endpoint: url, err: (err as Error).message }, 'modbus endpoint not reachable');
      return [];
    }
    const closeOnStop = () => connection.close();
    stop.addEventListener('abort', closeOnStop, { once: true });
    const devices: DiscoveredDevice[] = [];
    try {
      for (const unitId of unitIds) {
        if (stop.aborted) break;
        const probe = await probeUnit(connection, unitId, registers, timeoutMs);
        if (probe.found) devices.push(toDevice(endpoint, unitId, probe));
        else this.ctx.logger.debug({ endpoint: url, unitId, reason: probe.reason }, 'modbus unit not found');
        if (!probe.found && probe.fatal) break;
      }
    } finally {
      stop.removeEventListener('abort', closeOnStop);
      connection.close();
    }
    return devices;
  }
}

export function modbusDeviceId(endpoint: Endpoint, unitId: number): string {
  return `${endpointUrl(endpoint)}/${unitId}`;
}

function toDevice(
  endpoint: Endpoint,
  unitId: number,
  probe: Extract<UnitProbe, { found: true }>,
): DiscoveredDevice {
  const properties: Record<string, string> = {
    MODBUS_ENDPOINT: endpointUrl(endpoint),
    MODBUS_HOST: endpoint.host,
    MODBUS_PORT: String(endpoint.port),
    MODBUS_UNIT_ID: String(unitId),
  };
  const { vendor, productCode, revision } = probe.identity;
  if (vendor !== undefined) properties.MODBUS_VENDOR = vendor;
  if (productCode !== undefined) properties.MODBUS_PRODUCT_CODE = productCode;
  if (revision !== undefined) properties.MODBUS_REVISION = revision;
  for (const [name, value] of Object.entries(probe.registers)) {
    properties[`MODBUS_REGISTER_${name.toUpperCase()}`] = value;
  }
  return { id: modbusDeviceId(endpoint, unitId), properties };
}
