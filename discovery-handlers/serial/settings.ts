import { LeafbridgeError } from '../../src/util/errors.js';
import { LinearRegex } from '../../src/util/linearRegex.js';
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

/** RE2 syntax, run in linear time: a config's pattern cannot stall discovery however the port answers. */
function compilePattern(source: string): LinearRegex {
  try {
    return LinearRegex.compile(crlfLineEnds(source), { multiline: true });
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

/**
 * RE2's multiline `$` matches only before `\n`; serial devices end lines with `\r\n` (or a lone `\r` at
 * the end of a reply). Each `$` outside a character class becomes `\r?$`, so `^OK$` matches `OK\r\n` as it
 * did with JavaScript's RegExp. The match may then include the `\r`: the collector trims line ends.
 */
export function crlfLineEnds(source: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const ch = source[i] as string;
    if (ch === '\\') {
      out += ch + (source[i + 1] ?? '');
      i++;
    } else if (inClass) {
      out += ch;
      if (ch === ']') inClass = false;
    } else if (ch === '[') {
      // A `]` right after `[` or `[^` is a literal member, not the end of the class.
      const member = source[i + 1] === '^' ? 2 : 1;
      const first = source[i + member];
      out += source.slice(i, i + member) + (first === ']' ? ']' : '');
      i += member - 1 + (first === ']' ? 1 : 0);
      inClass = true;
    } else out += ch === '$' ? '\\r?$' : ch;
  }
  return out;
}
