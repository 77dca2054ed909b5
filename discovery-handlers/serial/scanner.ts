import { basename, dirname } from 'node:path';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { Clock } from '../../src/util/clock.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { type Candidate, findCandidates } from './candidates.js';
import { toDiscoveredDevice } from './device.js';
import { failedFilter } from './filter.js';
import { type ProbeResult, probeFailure, probePort } from './probe.js';
import type { SerialSettings } from './settings.js';
import { readSerialIdentity, type SerialIdentity, type SysRoots } from './sysfs.js';

type ProbeSettings = NonNullable<SerialSettings['probe']>;

export interface ScanContext {
  logger: Logger;
  clock: Clock;
  signal: AbortSignal;
  roots: SysRoots;
  /** Prefixes of the real paths a probe may write to (the agent's discovery.probeWritePaths). */
  probeWritePaths: readonly string[];
}

export interface ScanResult {
  devices: DiscoveredDevice[];
  /** Directories the matched device nodes live in (e.g. /dev/pts), worth watching for their removal. */
  nodeDirs: string[];
  /** Some probe could not run (port busy, locked, vanished): scan again soon rather than at the interval. */
  retry: boolean;
}

/** Ports probed at once; each holds a file descriptor and a buffer of at most `maxBytes`. */
const probeConcurrency = 8;

/**
 * One config's view of the serial ports. Each scan re-reads the globs and sysfs; probe verdicts are kept
 * per device node instance (see Candidate.key), so a port is probed once per plug-in, not once per scan.
 */
export class SerialScanner {
  private readonly verdicts = new Map<string, ProbeResult>();
  private inconclusive = 0;
  /** Ports refused a probe, each logged once. */
  private readonly refused = new Set<string>();

  constructor(
    private readonly settings: SerialSettings,
    private readonly ctx: ScanContext,
  ) {}

  async scan(): Promise<ScanResult> {
    const candidates = await findCandidates(this.settings.paths, this.ctx.logger);
    this.forgetGone(candidates);
    this.inconclusive = 0;
    const found = await mapLimit(candidates, probeConcurrency, (c) => this.examine(c));
    const devices = found.filter((d): d is DiscoveredDevice => d !== undefined);
    devices.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const nodeDirs = [...new Set(candidates.map((c) => dirname(c.realPath)))];
    return { devices, nodeDirs, retry: this.inconclusive > 0 };
  }

  private forgetGone(candidates: Candidate[]): void {
    const present = new Set(candidates.map((c) => c.key));
    for (const key of this.verdicts.keys()) if (!present.has(key)) this.verdicts.delete(key);
  }

  private async examine(candidate: Candidate): Promise<DiscoveredDevice | undefined> {
    const { logger, roots } = this.ctx;
    try {
      const identity = await readSerialIdentity(
        candidate.major,
        candidate.minor,
        basename(candidate.realPath),
        roots,
      );
      const failed = failedFilter(this.settings.filters, identity);
      if (failed) {
        logger.debug({ path: candidate.path, filter: failed, identity }, 'port filtered out');
        return undefined;
      }
      return await this.probeAndBuild(candidate, identity);
    } catch (err) {
      logger.warn({ path: candidate.path, err: errorMessage(err) }, 'port skipped after an error');
      return undefined;
    }
  }

  private async probeAndBuild(
    candidate: Candidate,
    identity: SerialIdentity,
  ): Promise<DiscoveredDevice | undefined> {
    const probe = this.settings.probe;
    if (!probe) return toDiscoveredDevice(candidate, identity);
    if (!this.mayWrite(candidate)) return undefined;
    const verdict = this.verdicts.get(candidate.key) ?? (await this.probe(candidate, probe));
    return verdict.ok ? toDiscoveredDevice(candidate, identity, verdict.reply) : undefined;
  }

  /**
   * A probe writes only to a port whose real path is under one of the agent's allowed prefixes: a
   * DiscoveryConfig (which any API user with write rights can make) names globs, not where bytes may go.
   */
  private mayWrite(candidate: Candidate): boolean {
    const allowed = this.ctx.probeWritePaths.some((prefix) => candidate.realPath.startsWith(prefix));
    if (!allowed && !this.refused.has(candidate.realPath)) {
      this.refused.add(candidate.realPath);
      this.ctx.logger.warn(
        { path: candidate.path, realPath: candidate.realPath, allowed: this.ctx.probeWritePaths },
        'probe refused: the port is not under discovery.probeWritePaths of the agent',
      );
    }
    return allowed;
  }

  private async probe(candidate: Candidate, probe: ProbeSettings): Promise<ProbeResult> {
    // The real path, as checked: a symlink changed after the check does not redirect the write.
    const result = await probePort({ ...probe, path: candidate.realPath }, this.ctx);
    const fields = { path: candidate.path, bytes: result.bytes, elapsedMs: result.elapsedMs };
    const { logger } = this.ctx;
    if (result.ok) logger.debug({ ...fields, reply: result.reply }, 'probe matched');
    else if (isVerdict(result))
      logger.debug({ ...fields, reason: result.reason, detail: result.detail }, 'probe failed: not a device');
    else
      logger.debug(
        { ...fields, reason: result.reason, detail: result.detail },
        'probe could not run; will retry',
      );
    // Only answers count as verdicts; a busy (locked by another prober) or vanishing port is asked again.
    if (isVerdict(result)) this.verdicts.set(candidate.key, result);
    else if (!result.ok && result.reason !== probeFailure.aborted) this.inconclusive++;
    return result;
  }
}

function isVerdict(result: ProbeResult): boolean {
  return result.ok || result.reason === probeFailure.timeout || result.reason === probeFailure.overflow;
}

/** Maps with at most `limit` calls in flight, keeping order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
