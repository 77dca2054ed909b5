import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { KubeRest } from '../../../src/kubeclient/kubeRest.js';
import {
  electionTimingProblems,
  LeaderElector,
  type LeaseRecord,
  leaderIdentity,
  microTime,
} from '../../../src/kubeclient/leaderElection.js';
import { type Clock, systemClock } from '../../../src/util/clock.js';
import { silentLogger } from '../../../src/util/logger.js';
import { KubeApiServer } from '../../helpers/kubeApiServer.js';
import { until } from '../../helpers/wait.js';

/**
 * The election rules against the test API server (generic Lease semantics: resourceVersion preconditions,
 * 409 on a stale write): two candidates racing, a crashed holder's lease expiring on the candidate's own
 * clock, renewals failing while the server is down, a graceful release, and clocks hours apart.
 */

const NS = 'default';
const LEASE = 'leafbridge-controller';
/** Short, but with room for a loaded machine: a renewal every 200 ms, given up after 1.4 s. */
const TIMING = { leaseDurationMs: 2000, renewDeadlineMs: 1400, retryPeriodMs: 200 };

let api: KubeApiServer | undefined;
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await api?.close();
  api = undefined;
});

async function server(): Promise<KubeApiServer> {
  api = await KubeApiServer.start();
  return api;
}

interface Candidate {
  elector: LeaderElector;
  /** When (Date.now) it started leading, and how its term ended. */
  leadingAt?: number;
  outcome?: 'stopped' | 'lost';
  outcomeAt?: number;
}

function candidate(
  s: KubeApiServer,
  identity: string,
  options: { clock?: Clock; leaseDurationMs?: number } = {},
): Candidate {
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig(NS));
  const rest = new KubeRest(kc, { timeoutMs: 2000 });
  const elector = new LeaderElector({
    rest,
    namespace: NS,
    name: LEASE,
    identity,
    logger: silentLogger(),
    ...TIMING,
    ...options,
  });
  const c: Candidate = { elector };
  void elector
    .run(() => {
      c.leadingAt = Date.now();
    })
    .then((outcome) => {
      c.outcome = outcome;
      c.outcomeAt = Date.now();
    });
  cleanups.push(async () => {
    await elector.stop();
    rest.close();
  });
  return c;
}

const lease = (s: KubeApiServer) => s.object('leases', NS, LEASE)?.spec as LeaseRecord | undefined;

/** A Lease as another process left it: held by `holder`, last renewed `ageMs` ago by the wall clock. */
function seedLease(s: KubeApiServer, holder: string, ageMs: number, durationSeconds = 2): void {
  const at = microTime(Date.now() - ageMs);
  s.seed('leases', {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: LEASE, namespace: NS },
    spec: {
      holderIdentity: holder,
      leaseDurationSeconds: durationSeconds,
      acquireTime: at,
      renewTime: at,
      leaseTransitions: 3,
    },
  });
}

/** Waits until the Lease's renewTime has changed `n` times, checking `invariant` at every look. */
async function renewals(s: KubeApiServer, n: number, invariant: () => void): Promise<void> {
  let last = lease(s)?.renewTime;
  let seen = 0;
  await until(
    () => {
      invariant();
      const now = lease(s)?.renewTime;
      if (now !== last) seen++;
      last = now;
      return seen >= n;
    },
    30_000,
    `${n} renewals`,
  );
}

describe('leader election on a Lease', () => {
  it('creates the Lease with the client-go record, renews it keeping acquireTime, and counts transitions', async () => {
    const s = await server();
    const a = candidate(s, 'a');
    await until(() => a.elector.leading, 10_000, 'a leading');
    const first = lease(s)!;
    expect(first).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 2, leaseTransitions: 0 });
    expect(first.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(first.acquireTime).toBe(first.renewTime);
    await renewals(s, 2, () => expect(a.elector.leading).toBe(true));
    expect(lease(s)).toMatchObject({
      holderIdentity: 'a',
      acquireTime: first.acquireTime,
      leaseTransitions: 0,
    });
    expect(lease(s)?.renewTime).not.toBe(first.renewTime);
  });

  it('two candidates racing for an expired Lease: one wins, the other gets 409 and stays a candidate', async () => {
    const s = await server();
    // A free Lease (released: no holder), so both candidates write at their first try.
    seedLease(s, '', 0);
    // Between the first candidate's read and its write, another writer takes the Lease.
    s.beforeNext({ verb: 'update', resource: 'leases' }, () => {
      s.resources.patch(
        s.type('leases'),
        NS,
        LEASE,
        'application/merge-patch+json',
        { spec: { holderIdentity: 'intruder', renewTime: microTime(Date.now()), leaseDurationSeconds: 60 } },
        {},
      );
    });
    const a = candidate(s, 'a');
    const b = candidate(s, 'b');
    await until(
      () => s.requests({ resource: 'leases', verb: 'update', status: 409 }).length >= 1,
      10_000,
      'a 409',
    );
    // The intruder holds it for 60 s: neither candidate may lead over several rounds of tries.
    await until(
      () => s.requests({ resource: 'leases', verb: 'get' }).length >= 12,
      20_000,
      'rounds of reads',
    );
    expect([a.elector.leading, b.elector.leading]).toEqual([false, false]);
    expect(lease(s)?.holderIdentity).toBe('intruder');

    // The intruder releases: exactly one of the two takes it, and the other never leads while it renews.
    s.resources.patch(
      s.type('leases'),
      NS,
      LEASE,
      'application/merge-patch+json',
      { spec: { holderIdentity: '' } },
      {},
    );
    await until(() => a.elector.leading || b.elector.leading, 15_000, 'a leader');
    const leader = a.elector.leading ? 'a' : 'b';
    expect(lease(s)).toMatchObject({ holderIdentity: leader, leaseTransitions: 4 });
    await renewals(s, 5, () => {
      expect(a.elector.leading && b.elector.leading).toBe(false);
      expect(lease(s)?.holderIdentity).toBe(leader);
    });
  });

  it("a crashed holder's Lease is taken only a lease duration after this candidate saw it change, whatever its times say", async () => {
    const s = await server();
    // Renewed an hour ago by the wall clock: a candidate comparing times would take it at once.
    seedLease(s, 'crashed', 3_600_000);
    const started = Date.now();
    const b = candidate(s, 'b');
    await until(() => b.elector.leading, 15_000, 'b leading after the expiry');
    expect(b.leadingAt! - started).toBeGreaterThanOrEqual(2000);
    expect(lease(s)).toMatchObject({ holderIdentity: 'b', leaseTransitions: 4 });
  });

  it('clocks hours apart are never compared: a candidate ahead waits while the leader renews, one behind takes over after a crash', async () => {
    const s = await server();
    const skewed = (offsetMs: number): Clock => ({ ...systemClock, now: () => Date.now() + offsetMs });
    const a = candidate(s, 'a');
    await until(() => a.elector.leading, 10_000, 'a leading');
    // b's clock is an hour ahead: a's renewTime looks an hour old to it.
    const b = candidate(s, 'b', { clock: skewed(3_600_000) });
    await renewals(s, 8, () => {
      expect(b.elector.leading).toBe(false);
      expect(a.elector.leading).toBe(true);
    });
    await b.elector.stop();

    // c's clock is an hour behind: a's renewTime looks an hour ahead. a crashes; c still takes over.
    const c = candidate(s, 'c', { clock: skewed(-3_600_000) });
    await until(() => c.elector.holder === 'a', 10_000, 'c saw the Lease');
    await a.elector.stop(); // stops renewing, releases nothing: a crash as the Lease sees it
    await until(() => c.elector.leading, 15_000, 'c leading');
    expect(lease(s)?.holderIdentity).toBe('c');
  });

  it('renewals failing (API server down): the leader stops leading on its renew deadline, and another takes over only after', async () => {
    const s = await server();
    const a = candidate(s, 'a');
    await until(() => a.elector.leading, 10_000, 'a leading');
    const b = candidate(s, 'b');
    await until(() => b.elector.holder === 'a', 10_000, 'b saw the Lease');
    await s.down();
    await until(() => a.outcome !== undefined, 15_000, "a's term to end");
    expect(a.outcome).toBe('lost');
    expect(a.elector.leading).toBe(false);
    await s.up();
    await until(() => b.elector.leading, 15_000, 'b leading once the server is back');
    expect(b.leadingAt!).toBeGreaterThan(a.outcomeAt!);
    expect(lease(s)?.holderIdentity).toBe('b');
    // a's election is over: no write of its name follows.
    await renewals(s, 3, () => expect(lease(s)?.holderIdentity).toBe('b'));
  });

  it('release clears the holder: a candidate takes over at its next try, not after the lease duration', async () => {
    const s = await server();
    // A 60 s lease: without the release, b would wait a minute.
    const a = candidate(s, 'a', { leaseDurationMs: 60_000 });
    await until(() => a.elector.leading, 10_000, 'a leading');
    const b = candidate(s, 'b');
    await until(() => b.elector.holder === 'a', 10_000, 'b saw the Lease');
    expect(await a.elector.release()).toBe(true);
    expect(lease(s)).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1, leaseTransitions: 0 });
    await until(() => b.elector.leading, 15_000, 'b leading after the release');
    expect(lease(s)).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    expect(a.outcome).toBe('stopped');
  });

  it('checks its timings as client-go does, and names itself after the pod with a random suffix', () => {
    expect(electionTimingProblems(15_000, 10_000, 2_000)).toEqual([]);
    expect(electionTimingProblems(10_000, 10_000, 2_000)).toEqual([
      'the lease duration must be longer than the renew deadline',
    ]);
    expect(electionTimingProblems(15_000, 2_000, 2_000)).toEqual([
      'the renew deadline must be longer than 1.2 × the retry period',
    ]);
    const id = leaderIdentity({ POD_NAME: 'leafbridge-controller-6d9f-abcde' });
    expect(id).toMatch(/^leafbridge-controller-6d9f-abcde_[0-9a-f]{8}$/);
    expect(leaderIdentity({ POD_NAME: 'p' })).not.toBe(leaderIdentity({ POD_NAME: 'p' }));
  });
});
