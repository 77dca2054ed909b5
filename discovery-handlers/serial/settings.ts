import { LeafbridgeError } from '../../src/util/errors.js';
import { parseEscapes } from './escapes.js';
import type { ProbeRequest } from './probe.js';
import { defaultSerialPaths, type SerialDetails, serialDefaults } from './schema.js';

/** A config's details with defaults applied and the probe compiled (escapes parsed, pattern built). */
export interface SerialSettings {
  paths: readonly string[];
  filters: Pick<SerialDetails, 'vendorIds' | 'productIds' | 'serialNumbers' | 'manufacturers'>;
  probe?: Omit<ProbeRequest, 'path'>;
  rescanIntervalMs: number;
}

/** Throws a LeafbridgeError (`SERIAL_BAD_ESCAPE`, `SERIAL_BAD_PATTERN`) for a probe that cannot work. */
export function resolveSettings(details: SerialDetails): SerialSettings {
  const { vendorIds, productIds, serialNumbers, manufacturers } = details;
  const settings: SerialSettings = {
    paths: details.paths ?? defaultSerialPaths,
    filters: { vendorIds, productIds, serialNumbers, manufacturers },
    rescanIntervalMs: details.rescanIntervalMs ?? serialDefaults.rescanIntervalMs,
  };
  if (!details.probe) return settings;
  const probe = details.probe;
  return {
    ...settings,
    probe: {
      write: parseEscapes(probe.write),
      expect: compilePattern(probe.expect),
      timeoutMs: probe.timeoutMs ?? serialDefaults.probeTimeoutMs,
      baudRate: probe.baudRate ?? serialDefaults.probeBaudRate,
      maxBytes: probe.maxBytes ?? serialDefaults.probeMaxBytes,
    },
  };
}

function compilePattern(source: string): RegExp {
  try {
    return new RegExp(source, 'm');
  } catch (err) {
    throw new LeafbridgeError(
      'SERIAL_BAD_PATTERN',
      `probe.expect ${JSON.stringify(source)} is not a valid regular expression`,
      {
        cause: err,
      },
    );
  }
}
