import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type Clock, sleep, systemClock } from '../util/clock.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { stableJson } from '../util/json.js';
import { child, type Logger } from '../util/logger.js';
import type { KubeObject } from './informer.js';
import { isConflict, isNotFound, shortError } from './kubeApiError.js';
import type { KubeRest } from './kubeRest.js';

/** What a `coordination.k8s.io/v1` Lease says about its holder (client-go's LeaderElectionRecord). */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

type Lease = KubeObject & { spec?: LeaseRecord };

export interface LeaderElectionOptions {
  rest: KubeRest;
  namespace: string;
  /** The Lease's name: one per component that elects a leader. */
  name: string;
  /** Who this candidate is; unique per process (`leaderIdentity()`). */
  identity: string;
  logger: Logger;
  clock?: Clock;
  /** How long a holder keeps the Lease without renewing it, as other candidates see it. Default 15 s. */
  leaseDurationMs?: number;
  /** A leader that has not renewed for this long stops leading (before anyone may take over). Default 10 s. */
  renewDeadlineMs?: number;
  /** Spacing of tries to acquire (with jitter) and to renew. Default 2 s. */
  retryPeriodMs?: number;
}

/** client-go's spacing of a candidate's tries: retryPeriod · (1 + 1.2·random). */
const JITTER = 1.2;

export class LeaderElectionError extends LeafbridgeError {}

/** A candidate's identity: the pod's name (`POD_NAME`, else the host name, which is the pod's) and a random suffix. */
export function leaderIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return `${env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`;
}

/** A MicroTime as the API server writes it (RFC 3339 with microseconds), for a Lease's times. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

/**
 * Leader election on a Lease, with the rules of client-go's `leaderelection`:
 *
 * - A Lease held by someone else is taken only when it has not *changed* for its `leaseDurationSeconds`, as
 *   measured on this candidate's own clock from the moment it saw the last change. Times written in the
 *   Lease are never compared with this clock: another node's clock may be hours off.
 * - Every write is conditional on the resourceVersion just read (a create, when there is no Lease): of two
 *   candidates writing at once one gets 409 Conflict, so two never both win.
 * - The leader renews every `retryPeriod`; when no renewal has succeeded for `renewDeadline` (shorter than
 *   the lease duration) it stops leading, before any other candidate may take over.
 * - `release()` clears the holder, so that a graceful stop hands over at the next try of another candidate.
 *
 * `run()` waits to acquire, then resolves `onLeading` and renews until `stop()` or until the lease is lost.
 */
export class LeaderElector {
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly stopping = new AbortController();
  /** The Lease as last read or written, and when (on this clock) its record was last seen to change. */
  private observed: { lease: Lease; at: number } | undefined;
  private lastRenewAt = 0;
  private leadingNow = false;
  private term: Promise<'stopped' | 'lost'> | undefined;

  constructor(private readonly o: LeaderElectionOptions) {
    this.logger = child(o.logger, 'leader-election');
    this.clock = o.clock ?? systemClock;
    this.leaseDurationMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = o.retryPeriodMs ?? 2_000;
    const problems = electionTimingProblems(this.leaseDurationMs, this.renewDeadlineMs, this.retryPeriodMs);
    if (problems.length > 0) throw new LeaderElectionError('LEADER_ELECTION_TIMING', problems.join('; '));
  }

  get identity(): string {
    return this.o.identity;
  }

  /** True from acquiring the Lease until it is lost or the election stops. */
  get leading(): boolean {
    return this.leadingNow;
  }

  /** The holder as last seen in the Lease (`''`: nobody), undefined before the first read. */
  get holder(): string | undefined {
    return this.observed ? (this.observed.lease.spec?.holderIdentity ?? '') : undefined;
  }

  /**
   * Campaigns until this candidate holds the Lease, calls `onLeading`, then renews it. Resolves `'stopped'`
   * after `stop()`, `'lost'` when the renewals failed for the renew deadline or another holder took it: the
   * caller must stop every write at once.
   */
  run(onLeading: () => void): Promise<'stopped' | 'lost'> {
    this.term ??= this.campaign(onLeading);
    return this.term;
  }

  private async campaign(onLeading: () => void): Promise<'stopped' | 'lost'> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      if ((await this.tryAcquireOrRenew(signal)) === 'ok') break;
      await sleep(this.retryPeriodMs * (1 + Math.random() * JITTER), signal);
    }
    if (signal.aborted) return 'stopped';
    this.leadingNow = true;
    this.logger.info({ identity: this.o.identity, lease: this.o.name }, 'became the leader');
    onLeading();
    const lost = await this.renewLoop(signal);
    if (lost) {
      this.leadingNow = false;
      this.logger.error({ identity: this.o.identity, lease: this.o.name, why: lost }, 'lost the lease');
      return 'lost';
    }
    return 'stopped';
  }

  /** Stops campaigning and renewing, and resolves once no request of the election is under way. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.term;
    this.leadingNow = false;
  }

  /**
   * Stops, then gives the Lease up if this candidate was the last to write it: the holder cleared (and a
   * 1 s duration, as client-go writes it), so that another candidate takes it at its next try. Call once
   * every write of the leader's term has ended. A Lease changed since is left alone (409).
   */
  async release(): Promise<boolean> {
    await this.stop();
    const lease = this.observed?.lease;
    if (!lease || lease.spec?.holderIdentity !== this.o.identity) return false;
    const now = this.clock.now();
    const spec: LeaseRecord = {
      ...lease.spec,
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: microTime(now),
      renewTime: microTime(now),
    };
    try {
      await this.write('PUT', { ...lease, spec });
      this.logger.info({ identity: this.o.identity, lease: this.o.name }, 'released the lease');
      return true;
    } catch (err) {
      this.logger.warn({ err: errorMessage(err), lease: this.o.name }, 'could not release the lease');
      return false;
    }
  }

  /** Renews every retry period; returns why leadership was lost, or undefined once stopped. */
  private async renewLoop(signal: AbortSignal): Promise<string | undefined> {
    while (!signal.aborted) {
      await sleep(this.retryPeriodMs, signal);
      while (!signal.aborted) {
        const left = this.lastRenewAt + this.renewDeadlineMs - this.clock.now();
        if (left <= 0) return `no renewal for ${this.renewDeadlineMs} ms`;
        const outcome = await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(left)]));
        if (outcome === 'ok') break;
        if (outcome === 'held') return `the lease is held by ${this.holder}`;
        await sleep(Math.min(this.retryPeriodMs, Math.max(0, left)), signal);
      }
    }
    return undefined;
  }

  /**
   * One round of client-go's tryAcquireOrRenew: `ok` when this candidate holds the Lease afterwards, `held`
   * when another holder's lease is still running, `failed` when the API server refused or did not answer.
   */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<'ok' | 'held' | 'failed'> {
    const now = this.clock.now();
    const mine: LeaseRecord = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
    };
    try {
      const lease = await this.read(signal);
      if (!lease) {
        const created = await this.write(
          'POST',
          {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { ...mine, leaseTransitions: 0 },
          },
          signal,
        );
        return this.succeeded(created, now);
      }
      this.observe(lease, now);
      const record = readRecord(lease.spec);
      const held = record.holderIdentity !== '' && record.holderIdentity !== this.o.identity;
      if (held && now < (this.observed?.at ?? now) + record.leaseDurationMs) return 'held';
      const renewing = record.holderIdentity === this.o.identity;
      const spec: LeaseRecord = {
        ...lease.spec,
        ...mine,
        ...(renewing && record.acquireTime ? { acquireTime: record.acquireTime } : {}),
        leaseTransitions: renewing ? record.transitions : record.transitions + 1,
      };
      const updated = await this.write('PUT', { ...lease, spec }, signal);
      return this.succeeded(updated, now);
    } catch (err) {
      if (isConflict(err)) {
        this.logger.debug(
          { lease: this.o.name },
          'the lease changed under this write (409): another candidate',
        );
        return 'failed';
      }
      this.logger.warn(
        { err: shortError(err), lease: this.o.name, leading: this.leadingNow },
        'lease round failed',
      );
      return 'failed';
    }
  }

  private succeeded(lease: Lease, startedAt: number): 'ok' {
    this.observed = { lease, at: this.clock.now() };
    // The deadline counts from before the write: the Lease says `renewTime` from then on.
    this.lastRenewAt = startedAt;
    return 'ok';
  }

  /** Notes `lease`; when its record differs from the last one seen, it changed now (on this clock). */
  private observe(lease: Lease, now: number): void {
    const seen = this.observed;
    const changed = !seen || stableJson(seen.lease.spec ?? {}) !== stableJson(lease.spec ?? {});
    this.observed = { lease, at: changed || !seen ? now : seen.at };
  }

  private path(name?: string): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.o.namespace)}/leases`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }

  private async read(signal: AbortSignal): Promise<Lease | undefined> {
    try {
      return await this.o.rest.call<Lease>({ method: 'GET', path: this.path(this.o.name), signal });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** A create (POST) or a replace (PUT, conditional on the body's resourceVersion). */
  private write(method: 'POST' | 'PUT', body: Lease, signal?: AbortSignal): Promise<Lease> {
    const path = method === 'POST' ? this.path() : this.path(this.o.name);
    return this.o.rest.call<Lease>({ method, path, body, ...(signal ? { signal } : {}) });
  }
}

/** A Lease's record as read, with what another writer may have left out or mistyped made safe. */
function readRecord(spec: LeaseRecord | undefined): {
  holderIdentity: string;
  leaseDurationMs: number;
  acquireTime: string;
  transitions: number;
} {
  const seconds = spec?.leaseDurationSeconds;
  const transitions = spec?.leaseTransitions;
  return {
    holderIdentity: typeof spec?.holderIdentity === 'string' ? spec.holderIdentity : '',
    // No usable duration: the holder's lease counts as 15 s, client-go's default.
    leaseDurationMs: typeof seconds === 'number' && seconds > 0 ? seconds * 1000 : 15_000,
    acquireTime: typeof spec?.acquireTime === 'string' ? spec.acquireTime : '',
    transitions: typeof transitions === 'number' && transitions >= 0 ? Math.floor(transitions) : 0,
  };
}

/** client-go's rules: lease duration > renew deadline > 1.2 · retry period > 0. */
export function electionTimingProblems(leaseMs: number, renewMs: number, retryMs: number): string[] {
  const problems: string[] = [];
  if (!(retryMs > 0)) problems.push('the retry period must be positive');
  if (!(leaseMs > renewMs)) problems.push('the lease duration must be longer than the renew deadline');
  if (!(renewMs > JITTER * retryMs))
    problems.push(`the renew deadline must be longer than ${JITTER} × the retry period`);
  return problems;
}
