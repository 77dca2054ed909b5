import {
  DEFAULT_PROBE_WRITE_PATHS,
  type DiscoveredDevice,
  type DiscoveryContext,
  type DiscoveryHandler,
} from '../../src/model/handler.js';
import { sleep } from '../../src/util/clock.js';
import { logError } from '../../src/util/logger.js';
import { ModbusScanner } from './scanner.js';
import { type ModbusDetails, ModbusDetailsSchema } from './schema.js';
import { resolveSettings } from './targets.js';

export type ModbusHandler = DiscoveryHandler<typeof ModbusDetailsSchema>;

/** TCP units are seen from every node that reaches the network (shared); an RTU line is one node's. */
export function modbusShared(details: ModbusDetails): boolean {
  return (details.serialPorts ?? []).length === 0;
}

export const modbusHandler: ModbusHandler & { sharedFor: typeof modbusShared } = {
  name: 'modbus',
  detailsSchema: ModbusDetailsSchema,
  shared: true,
  sharedFor: modbusShared,
  discover: discoverModbus,
};

/**
 * Modbus has no announcements: scans at start and every `rescanIntervalMs`, yielding the full list when it
 * changes. Throws only for details that cannot work (a range too large, a bad host).
 */
async function* discoverModbus(
  details: ModbusDetails,
  ctx: DiscoveryContext,
): AsyncGenerator<DiscoveredDevice[]> {
  const settings = resolveSettings(details);
  const { logger, clock, signal } = ctx;
  const scanner = new ModbusScanner(settings, {
    logger,
    clock,
    signal,
    probeWritePaths: ctx.probeWritePaths ?? DEFAULT_PROBE_WRITE_PATHS,
  });
  let last: string | undefined;
  while (!signal.aborted) {
    let devices: DiscoveredDevice[] | undefined;
    try {
      devices = await scanner.scan();
    } catch (err) {
      logError(logger, 'modbus scan failed', err);
    }
    if (signal.aborted) break;
    const snapshot = devices && JSON.stringify(devices);
    if (devices && snapshot !== last) {
      last = snapshot;
      logger.debug({ count: devices.length, ids: devices.map((d) => d.id) }, 'modbus devices changed');
      yield devices;
    }
    await sleep(settings.rescanIntervalMs, signal);
  }
}
