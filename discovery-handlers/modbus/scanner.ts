import { setMaxListeners } from 'node:events';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { Clock } from '../../src/util/clock.js';
import type { Logger } from '../../src/util/logger.js';
import { Semaphore } from '../../src/util/semaphore.js';
import { probeUnit, type UnitProbe } from './probe.js';
import { rtuTarget, type ScanTarget, tcpTarget } from './scanTargets.js';
import type { ModbusSettings } from './targets.js';
import type { ModbusTransport } from './tcpConnection.js';

export interface ScanContext {
  logger: Logger;
  clock: Clock;
  signal: AbortSignal;
  probeWritePaths: readonly string[];
}

/**
 * Probes every target's units, `concurrency` targets at once, within `scanTimeoutMs`. A target the
 * deadline cut short keeps the devices its last finished probe found, so a large range scanned over
 * several rounds does not flap.
 */
export class ModbusScanner {
  private readonly found = new Map<string, DiscoveredDevice[]>();
  private targets: ScanTarget[] | undefined;

  constructor(
    private readonly settings: ModbusSettings,
    private readonly ctx: ScanContext,
  ) {}

  async scan(): Promise<DiscoveredDevice[]> {
    const { clock, signal } = this.ctx;
    const deadline = new AbortController();
    const timer = clock.setTimeout(() => deadline.abort(), this.settings.scanTimeoutMs);
    const stop = AbortSignal.any([signal, deadline.signal]);
    // Each target being probed listens for the stop: up to `concurrency` at once, more than Node's default 10.
    setMaxListeners(this.settings.concurrency + 1, stop);
    const limit = new Semaphore(this.settings.concurrency);
    this.targets ??= await this.resolveTargets();
    try {
      await Promise.all(
        this.targets.map((target) =>
          limit.run(async () => {
            if (stop.aborted) return;
            const devices = await this.probeTarget(target, stop);
            if (!stop.aborted) this.found.set(target.key, devices);
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

  private async resolveTargets(): Promise<ScanTarget[]> {
    const serial = await Promise.all(
      this.settings.serialLines.map((line) => rtuTarget(line, this.ctx.probeWritePaths)),
    );
    return [...this.settings.endpoints.map(tcpTarget), ...serial];
  }

  private async probeTarget(target: ScanTarget, stop: AbortSignal): Promise<DiscoveredDevice[]> {
    const { timeoutMs, unitIds, registers } = this.settings;
    let connection: ModbusTransport;
    try {
      connection = await target.open(timeoutMs, this.ctx.clock);
    } catch (err) {
      this.ctx.logger.debug(
        { target: target.key, err: (err as Error).message },
        'modbus target not reachable',
      );
      return [];
    }
    const closeOnStop = () => connection.close();
    stop.addEventListener('abort', closeOnStop, { once: true });
    const devices: DiscoveredDevice[] = [];
    try {
      for (const unitId of unitIds) {
        if (stop.aborted) break;
        const probe = await probeUnit(connection, unitId, registers, timeoutMs);
        if (probe.found) devices.push(toDevice(target, unitId, probe));
        else
          this.ctx.logger.debug(
            { target: target.key, unitId, reason: probe.reason },
            'modbus unit not found',
          );
        if (!probe.found && probe.fatal) break;
      }
    } finally {
      stop.removeEventListener('abort', closeOnStop);
      connection.close();
    }
    return devices;
  }
}

function toDevice(
  target: ScanTarget,
  unitId: number,
  probe: Extract<UnitProbe, { found: true }>,
): DiscoveredDevice {
  const properties: Record<string, string> = { ...target.properties, MODBUS_UNIT_ID: String(unitId) };
  const { vendor, productCode, revision } = probe.identity;
  if (vendor !== undefined) properties.MODBUS_VENDOR = vendor;
  if (productCode !== undefined) properties.MODBUS_PRODUCT_CODE = productCode;
  if (revision !== undefined) properties.MODBUS_REVISION = revision;
  for (const [name, value] of Object.entries(probe.registers)) {
    properties[`MODBUS_REGISTER_${name.toUpperCase()}`] = value;
  }
  const device: DiscoveredDevice = { id: `${target.key}/${unitId}`, properties };
  if (target.deviceNodes) device.deviceNodes = target.deviceNodes;
  return device;
}
