// The hub's Device status writes (src/hub/statusWriter.ts) and the version ordering they rest on
// (src/hub/statusPatch.ts), against the test API server over HTTP with the real REST client: a burst is one
// write, nothing older than the server's state is written, conflicts re-read and keep what others wrote, an
// outage ends in one write with the newest state.
import { createHook } from 'node:async_hooks';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { builtinHandlers } from '../../../src/builtinHandlers.js';
import type { Presence, Report } from '../../../src/hub/messages.js';
import { StatusWriter } from '../../../src/hub/statusWriter.js';
import { emptyMetrics, type HubDevice } from '../../../src/hub/types.js';
import { crdManifests } from '../../../src/install/crds.js';
import { KubeRest } from '../../../src/kubeclient/kubeRest.js';
import { createLogger } from '../../../src/util/logger.js';
import { KubeApiServer } from '../../helpers/kubeApiServer.js';
import { errors } from '../../helpers/kubeStatus.js';
import { until } from '../../helpers/wait.js';

const NS = 'default';
const T0 = '2026-01-01T00:00:00Z';
const AT = Date.parse('2026-06-01T12:00:00Z');

type Status = {
  online?: boolean;
  lastSeen?: string;
  reported?: Record<string, unknown>;
  conditions?: { type: string; status: string; reason: string; message: string }[];
};

/**
 * Timers set by leafbridge's own code (src/) that have neither run nor been cleared and keep the process alive
 * (a writer's write timers do). Counted through async hooks rather than process.getActiveResourcesInfo(), whose
 * count also moves with the test runner's own timers (its 100-ms report timer came and went mid-test).
 */
const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));
const pendingTimers = new Map<number, NodeJS.Timeout>();
const timerHook = createHook({
  init(id, type, _trigger, resource) {
    if (type === 'Timeout' && new Error().stack?.includes(SRC))
      pendingTimers.set(id, resource as NodeJS.Timeout);
  },
  destroy(id) {
    pendingTimers.delete(id);
  },
});
/** Counted after a turn of the event loop: async hooks tell of a cleared or finished timer on the next one. */
async function activeTimers(): Promise<number> {
  for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
  return [...pendingTimers.values()].filter((t) => t.hasRef()).length;
}

/** Waits for `check` on real I/O while the test's timers are fake (bounded by the wall clock, not a timer). */
async function untilIo(check: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const report = (version: number, doc: Record<string, unknown>, o: Partial<Report> = {}): Report => ({
  node: 'n1',
  epoch: 'e1',
  receivedAt: AT,
  doc: { ...doc, $version: version },
  version,
  ...o,
});

const presence = (online: boolean, seq: number | undefined, o: Partial<Presence> = {}): Presence => ({
  node: 'n1',
  receivedAt: AT,
  online,
  ...(seq === undefined ? {} : { msgId: { epoch: 'e1', seq, text: `e1-${seq}` } }),
  ...o,
});

describe('StatusWriter', () => {
  let api: KubeApiServer;
  let seq = 0;
  const cleanups: (() => void)[] = [];
  beforeAll(async () => {
    timerHook.enable();
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
  });
  afterAll(async () => {
    timerHook.disable();
    await api?.close();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) c();
    await api.up();
    api.slow(0);
  });

  /** A Device on the server (with `status` when given); returns its name. */
  function seed(status?: Status): string {
    const name = `dev-${++seq}`;
    api.seed('devices', {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'Device',
      metadata: { name, namespace: NS },
      spec: {
        id: name,
        configName: 'sensors',
        handler: 'mqtt',
        shared: false,
        nodes: ['n1'],
        capacity: 1,
        properties: {},
        deviceNodes: [],
        mounts: [],
      },
    });
    if (status) patchStatus(name, status);
    return name;
  }

  function patchStatus(name: string, status: Status): void {
    api.resources.patch(
      api.type('devices'),
      NS,
      name,
      'application/merge-patch+json',
      { status },
      {
        subresource: 'status',
      },
    );
  }

  const stored = (name: string) => api.object('devices', NS, name) as unknown as HubDevice;
  const statusOf = (name: string) => (stored(name)?.status ?? {}) as Status;
  const statusWrites = (name: string) =>
    api.requests({ verb: 'patch', subresource: 'status', name }).filter((r) => r.status === 200).length;

  /**
   * A writer whose watch is the server itself (`known` reads the stored object), or what `known` says.
   * `intervalMs` long by default: only the first write of a quiet Device comes soon (after its settle).
   */
  function writer(
    o: {
      known?: (name: string) => HubDevice | undefined;
      intervalMs?: number;
      concurrency?: number;
      backoff?: { baseMs: number; maxMs: number };
      /** Another server than the test API server (`http://127.0.0.1:<port>`). */
      server?: string;
    } = {},
  ) {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(o.server ? api.kubeconfig(NS).replace(api.url, o.server) : api.kubeconfig(NS));
    const rest = new KubeRest(kubeConfig, { timeoutMs: 5_000 });
    const metrics = emptyMetrics();
    const refused: [string, string][] = [];
    const lines: { msg: string; [k: string]: unknown }[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: new Writable({
        write(chunk, _enc, cb) {
          for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
          cb();
        },
      }),
    });
    const w = new StatusWriter({
      rest,
      namespace: NS,
      logger,
      metrics,
      intervalMs: o.intervalMs ?? 60_000,
      concurrency: o.concurrency ?? 4,
      backoff: o.backoff ?? { baseMs: 20, maxMs: 100 },
      probe: { baseMs: 20, maxMs: 100 },
      known: o.known ?? ((name) => stored(name)),
      onRefused: (name, err) => refused.push([name, err]),
    });
    cleanups.push(() => {
      w.close();
      rest.close();
    });
    return { w, metrics, refused, lines };
  }

  it('a burst of changes to a quiet Device is one write with the newest report and presence', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const { w, metrics } = writer();
    const started = performance.now();
    expect(w.offer(name, { report: report(1, { fw: '1.0' }) })).toBe(true);
    expect(w.offer(name, { report: report(3, { fw: '1.2' }) })).toBe(true);
    // Older than what is pending: not newer, and not written.
    expect(w.offer(name, { report: report(2, { fw: '1.1' }) })).toBe(false);
    expect(w.offer(name, { presence: presence(false, 7) })).toBe(true);
    expect(w.offer(name, { presence: presence(true, 9, { receivedAt: AT + 5_000 }) })).toBe(true);
    expect(w.offer(name, { presence: presence(false, 8) })).toBe(false);
    expect(w.backlog).toBe(1);
    await until(() => w.backlog === 0, 10_000, 'the write');
    expect(statusWrites(name)).toBe(1);
    const s = statusOf(name);
    expect(s.reported).toEqual({ fw: '1.2', $version: 3, $node: 'n1', $epoch: 'e1' });
    expect(s.online).toBe(true); // the agents own it; the hub leaves it
    expect(s.lastSeen).toBe('2026-06-01T12:00:05Z');
    expect(s.conditions).toEqual([
      expect.objectContaining({
        type: 'Connected',
        status: 'True',
        reason: 'MqttOnline',
        message: 'online at n1 (lb-msg-id e1-9)',
      }),
    ]);
    expect(metrics).toMatchObject({ apiWrites: 1, reportedWritten: 1, apiWriteFailures: 0, stale: 0 });
    // The time the write took: more than nothing, less than the whole test.
    expect(metrics.apiWriteMs).toBeGreaterThan(0);
    expect(metrics.apiWriteMs).toBeLessThanOrEqual(performance.now() - started);
  });

  it('writes online: false only when the Device has no online field; an offline presence reads MqttOffline', async () => {
    const name = seed();
    const { w } = writer();
    w.offer(name, { presence: presence(false, undefined, { node: 'n2' }) });
    await until(() => w.backlog === 0 && statusWrites(name) === 1, 10_000, 'the write');
    const s = statusOf(name);
    expect(s.online).toBe(false);
    expect(s.lastSeen).toBe('2026-06-01T12:00:00Z');
    expect(s.conditions?.[0]).toMatchObject({
      type: 'Connected',
      status: 'False',
      reason: 'MqttOffline',
      message: 'offline at n2',
    });
  });

  it('never writes a report older than the server holds from the same edge database; another epoch or node replaces it', async () => {
    const name = seed({
      online: true,
      lastSeen: '2027-01-01T00:00:00Z',
      reported: { fw: '2.0', $version: 5, $node: 'n1', $epoch: 'e1' },
    });
    const { w, metrics } = writer({ intervalMs: 50 });
    w.offer(name, { report: report(5, { fw: 'same version' }) });
    w.offer(name, { presence: presence(true, 3) });
    await until(() => metrics.apiWrites === 1, 10_000, 'the presence write');
    // The same version is stale: only the condition was written; lastSeen never moves back.
    expect(metrics.stale).toBe(1);
    expect(metrics.reportedWritten).toBe(0);
    expect(statusOf(name).reported).toMatchObject({ fw: '2.0', $version: 5 });
    expect(statusOf(name).lastSeen).toBe('2027-01-01T00:00:00Z');
    // Older again, and an older presence of the same epoch: nothing to write at all.
    w.offer(name, { report: report(4, { fw: 'older' }), presence: presence(false, 2) });
    await until(() => metrics.writesSkipped === 1, 10_000, 'the skipped write');
    expect(metrics.stale).toBe(3);
    expect(metrics.apiWrites).toBe(1);
    // A replaced edge database (another epoch): its lower version wins, and so does its presence.
    w.offer(name, {
      report: report(1, { fw: '3.0' }, { epoch: 'e2' }),
      presence: presence(false, 1, { msgId: { epoch: 'e2', seq: 1, text: 'e2-1' } }),
    });
    await until(() => w.backlog === 0 && statusOf(name).reported?.$epoch === 'e2', 10_000, 'the new epoch');
    expect(statusOf(name).reported).toEqual({ fw: '3.0', $version: 1, $node: 'n1', $epoch: 'e2' });
    expect(statusOf(name).conditions?.[0]?.message).toBe('offline at n1 (lb-msg-id e2-1)');
    expect(metrics.reportedWritten).toBe(1);
  });

  it('without message ids (MQTT 3.1.1) a report orders by version per node, and another node replaces it', async () => {
    const name = seed({
      online: true,
      lastSeen: T0,
      reported: { fw: '2.0', $version: 5, $node: 'n1' },
    });
    const { w, metrics } = writer({ intervalMs: 50 });
    w.offer(name, { report: report(4, { fw: 'older' }, { epoch: undefined }) });
    await until(() => metrics.writesSkipped + metrics.apiWrites >= 1, 10_000, 'the first decision');
    // Only lastSeen could change, and a stale report moves nothing: skipped.
    expect(metrics.writesSkipped).toBe(1);
    w.offer(name, { report: report(6, { fw: '2.1' }, { epoch: undefined }) });
    await until(() => statusOf(name).reported?.$version === 6, 10_000, 'the newer version');
    // Only what changed is sent: fw, $version.
    w.offer(name, { report: report(1, { fw: '9.0' }, { epoch: undefined, node: 'n2' }) });
    await until(() => statusOf(name).reported?.$node === 'n2', 10_000, 'the other node');
    expect(statusOf(name).reported).toEqual({ fw: '9.0', $version: 1, $node: 'n2' });
  });

  it('a write against an old copy gets 409, re-reads and keeps what another writer put there', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const old = structuredClone(stored(name));
    // Another writer (an agent) changes the status after the hub's copy was taken.
    patchStatus(name, { online: false });
    const { w, metrics } = writer({ known: () => old });
    w.offer(name, { report: report(1, { fw: '1.0' }) });
    await until(() => w.backlog === 0 && metrics.apiWrites === 2, 10_000, 'the write after the conflict');
    expect(metrics.apiWriteConflicts).toBe(1);
    expect(statusOf(name)).toMatchObject({ online: false, reported: { fw: '1.0', $version: 1 } });
    // The answer is remembered: the next write goes against it, not the watch's old copy, without a conflict.
    w.offer(name, { report: report(2, { fw: '1.1' }) });
    await w.drain(10_000);
    expect(statusOf(name).reported).toMatchObject({ fw: '1.1', $version: 2 });
    expect(metrics.apiWriteConflicts).toBe(1);
    expect(metrics.apiWrites).toBe(3);
  });

  it('while the API server is down the changes wait and fold; once it is back each Device gets one write', async () => {
    const a = seed({ online: true, lastSeen: T0 });
    const b = seed({ online: true, lastSeen: T0 });
    const { w, lines, metrics } = writer({ intervalMs: 50 });
    await api.down();
    w.offer(a, { report: report(1, { v: 1 }) });
    w.offer(b, { presence: presence(true, 1) });
    await until(
      () => lines.some((l) => l.msg === 'API server unreachable; Device status writes wait'),
      10_000,
      'the outage noticed',
    );
    for (let v = 2; v <= 20; v++) w.offer(a, { report: report(v, { v }) });
    w.offer(b, { presence: presence(false, 2) });
    expect(w.backlog).toBe(2);
    api.clearLog();
    await api.up();
    await until(() => w.backlog === 0, 10_000, 'the writes after the outage');
    expect(statusOf(a).reported).toMatchObject({ v: 20, $version: 20 });
    expect(statusOf(b).conditions?.[0]?.message).toBe('offline at n1 (lb-msg-id e1-2)');
    expect(statusWrites(a)).toBe(1);
    expect(statusWrites(b)).toBe(1);
    expect(metrics.reportedWritten).toBe(1);
    // One warning for the outage (not one per Device), saying what failed.
    const warnings = lines.filter((l) => l.msg === 'API server unreachable; Device status writes wait');
    expect(warnings).toEqual([expect.objectContaining({ err: expect.stringContaining('ECONNREFUSED') })]);
    // The probe that saw the server back asked for one Device, not the whole list.
    const probes = api.requests({ verb: 'list', resource: 'devices' });
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.map((r) => r.query.limit)).toEqual(probes.map(() => '1'));
  });

  it('retries a 503 with backoff; a write refused for good (422) is dropped and reported', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const { w, metrics, refused } = writer({ intervalMs: 50, backoff: { baseMs: 250, maxMs: 250 } });
    api.failNext(2, 503, { verb: 'patch' });
    w.offer(name, { report: report(1, { fw: '1.0' }) });
    await until(() => statusOf(name).reported?.$version === 1, 10_000, 'the write after two 503s');
    expect(metrics.apiWriteFailures).toBe(2);
    expect(refused).toEqual([]);
    // Each retry came a backoff (250 ms here) after the 503 was answered, not at once.
    const tries = api.requests({ verb: 'patch', subresource: 'status', name });
    expect(tries.map((r) => r.status)).toEqual([503, 503, 200]);
    for (let i = 1; i < tries.length; i++) {
      expect(
        (tries[i]?.at ?? 0) - (tries[i - 1]?.answeredAt ?? Number.POSITIVE_INFINITY),
      ).toBeGreaterThanOrEqual(245);
    }
    api.failNext(1, 422, { verb: 'patch' });
    w.offer(name, { report: report(2, { fw: '2.0' }) });
    await until(() => refused.length === 1, 10_000, 'the refusal');
    expect(refused[0]?.[0]).toBe(name);
    expect(refused[0]?.[1]).toBe('HTTP 422: Internal error occurred: injected failure');
    expect(metrics.apiWriteFailures).toBe(3);
    // Dropped: nothing left to write, the server keeps version 1.
    await until(() => w.backlog === 0, 10_000, 'the backlog emptied');
    expect(statusOf(name).reported?.$version).toBe(1);
  });

  it('repeated 503s back off longer each time: the base, then twice, then four times it', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    // The jitter at its top, so that each backoff is its ceiling: baseMs × 2^attempt (up to maxMs).
    vi.spyOn(Math, 'random').mockReturnValue(0.999);
    cleanups.push(() => vi.restoreAllMocks());
    const { w } = writer({ intervalMs: 50, backoff: { baseMs: 100, maxMs: 1_000 } });
    api.failNext(3, 503, { verb: 'patch' });
    w.offer(name, { report: report(1, { fw: '1.0' }) });
    await until(() => statusOf(name).reported?.$version === 1, 10_000, 'the write after three 503s');
    const tries = api.requests({ verb: 'patch', subresource: 'status', name });
    expect(tries.map((r) => r.status)).toEqual([503, 503, 503, 200]);
    // From each 503's answer to the next try.
    const waits = tries.slice(1).map((r, i) => r.at - (tries[i]?.answeredAt ?? Number.POSITIVE_INFINITY));
    expect(waits[0]).toBeGreaterThanOrEqual(95);
    expect(waits[1]).toBeGreaterThanOrEqual(195);
    expect(waits[2]).toBeGreaterThanOrEqual(395);
  });

  it('a write that waited out an outage goes as soon as the server answers again, not a backoff later', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    // A backoff far longer than the test: only a 5xx or a conflict beyond the retries may wait it out.
    const { w, lines } = writer({ intervalMs: 50, backoff: { baseMs: 60_000, maxMs: 60_000 } });
    await api.down();
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(
      () => lines.some((l) => l.msg === 'API server unreachable; Device status writes wait'),
      10_000,
      'the outage noticed',
    );
    await api.up();
    await until(
      () => w.backlog === 0 && statusOf(name).reported?.$version === 1,
      10_000,
      'the write once the server is back',
    );
  });

  it('a refusal with a long message is reported with the first 300 characters of it', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const { w, refused } = writer({ intervalMs: 50 });
    // A schema with many errors at once (or a validating webhook) answers with a message of any length.
    const invalid = errors.invalid(
      api.type('devices'),
      name,
      Array.from({ length: 20 }, (_, i) => ({
        reason: 'FieldValueInvalid' as const,
        field: `status.reported.f${i}`,
        message: 'Invalid value: "x": must be a number',
      })),
    );
    expect(invalid.message.length).toBeGreaterThan(300);
    api.beforeNext({ verb: 'patch', subresource: 'status', name }, () => {
      throw invalid;
    });
    w.offer(name, { report: report(1, { f0: 'x' }) });
    await until(() => refused.length === 1, 10_000, 'the refusal');
    expect(refused).toEqual([[name, `HTTP 422: ${invalid.message.slice(0, 300)}`]]);
  });

  it('an answer that is no API answer (a proxy page with 200) is reported as HTTP ? with what failed, and dropped', async () => {
    const page = '<html><body>Sign in to continue</body></html>';
    const proxy = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(page);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => {
      proxy.closeAllConnections();
      proxy.close();
    });
    const { port } = proxy.address() as AddressInfo;
    const device: HubDevice = {
      metadata: { name: 'dev-behind-a-proxy', namespace: NS, resourceVersion: '1' },
    };
    const { w, refused, metrics } = writer({
      intervalMs: 50,
      server: `http://127.0.0.1:${port}`,
      known: () => device,
    });
    w.offer(device.metadata.name, { report: report(1, { v: 1 }) });
    await until(() => w.backlog === 0 && refused.length === 1, 10_000, 'the refusal');
    let parseError = '';
    try {
      JSON.parse(page);
    } catch (err) {
      parseError = (err as Error).message;
    }
    expect(refused).toEqual([[device.metadata.name, `HTTP ?: ${parseError}`]]);
    expect(metrics).toMatchObject({ apiWrites: 1, apiWriteFailures: 1 });
  });

  it('a Device deleted between a conflict and its re-read is not written again', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const old = structuredClone(stored(name));
    // Another writer changes the status (the hub's copy is now old: its write gets 409), then deletes it.
    patchStatus(name, { online: false });
    api.beforeNext({ verb: 'get', resource: 'devices', name }, () => api.remove('devices', NS, name));
    const { w, metrics, refused } = writer({ intervalMs: 50, known: () => old });
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(() => w.backlog === 0, 10_000, 'the write given up');
    expect(api.requests({ verb: 'patch', subresource: 'status', name }).map((r) => r.status)).toEqual([409]);
    expect(api.requests({ verb: 'get', resource: 'devices', name }).map((r) => r.status)).toEqual([404]);
    expect(refused).toEqual([]);
    expect(metrics).toMatchObject({ apiWrites: 1, apiWriteConflicts: 1, apiWriteFailures: 0 });
  });

  it('a re-read that fails (503) after a conflict is retried after a backoff, against the copy the writer had', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const old = structuredClone(stored(name));
    // The watch stays at the seeded copy; the writer's own answer is newer.
    const { w, metrics } = writer({ intervalMs: 50, known: () => old, backoff: { baseMs: 250, maxMs: 250 } });
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(() => w.backlog === 0 && statusOf(name).reported?.$version === 1, 10_000, 'the first write');
    api.failNext(1, 409, { verb: 'patch' });
    api.failNext(1, 503, { verb: 'get' });
    w.offer(name, { report: report(2, { v: 2 }) });
    await until(() => w.backlog === 0 && statusOf(name).reported?.$version === 2, 10_000, 'the second write');
    // The failed re-read did not cost the writer its copy: the retry went against it, with no new conflict.
    const patches = api.requests({ verb: 'patch', subresource: 'status', name });
    expect(patches.map((r) => r.status)).toEqual([200, 409, 200]);
    const reads = api.requests({ verb: 'get', resource: 'devices', name });
    expect(reads.map((r) => r.status)).toEqual([503]);
    expect(metrics).toMatchObject({ apiWriteConflicts: 1, apiWriteFailures: 1 });
    // Like a 503 on the write itself, it was retried a backoff (250 ms here) after the 503 was answered.
    expect((patches[2]?.at ?? 0) - (reads[0]?.answeredAt ?? Number.POSITIVE_INFINITY)).toBeGreaterThanOrEqual(
      245,
    );
  });

  it('a Device deleted on the server, unknown to the watch or forgotten is not written', async () => {
    const gone = seed({ online: true, lastSeen: T0 });
    const unknown = seed({ online: true, lastSeen: T0 });
    const forgotten = seed({ online: true, lastSeen: T0 });
    const copy = structuredClone(stored(gone));
    const { w, metrics, refused } = writer({
      intervalMs: 50,
      known: (n) => (n === gone ? copy : n === unknown ? undefined : stored(n)),
    });
    api.remove('devices', NS, gone);
    w.offer(gone, { report: report(1, { x: 1 }) });
    w.offer(unknown, { report: report(1, { x: 1 }) });
    w.offer(forgotten, { report: report(1, { x: 1 }) });
    w.forget(forgotten);
    await until(() => w.backlog === 0, 10_000, 'nothing left');
    // The deleted one was tried once (404: done, no retry), the others never.
    expect(api.requests({ verb: 'patch', subresource: 'status', name: gone }).map((r) => r.status)).toEqual([
      404,
    ]);
    expect(api.requests({ verb: 'patch', subresource: 'status', name: unknown })).toEqual([]);
    expect(api.requests({ verb: 'patch', subresource: 'status', name: forgotten })).toEqual([]);
    expect(refused).toEqual([]);
    expect(metrics.apiWrites).toBe(1);
  });

  it('drain writes what waits for its interval now, and a change that came during a write; after close nothing is taken', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const { w } = writer();
    // A change arrives while the first write is on its way: one Device waiting, not two.
    let backlogDuringWrite = -1;
    api.beforeNext({ verb: 'patch', subresource: 'status', name }, () => {
      w.offer(name, { report: report(2, { v: 2 }) });
      backlogDuringWrite = w.backlog;
    });
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(() => statusOf(name).reported?.$version === 1, 10_000, 'the first write');
    await w.drain(10_000);
    expect(w.backlog).toBe(0);
    expect(backlogDuringWrite).toBe(1);
    expect(statusOf(name).reported?.$version).toBe(2);
    // The next change waits for the (minute-long) interval; drain writes it at once.
    const before = await activeTimers();
    w.offer(name, { report: report(3, { v: 3 }) });
    expect(w.backlog).toBe(1);
    // drain returns once nothing is left: it does not wait out its time.
    const drainStarted = performance.now();
    await w.drain(10_000);
    expect(performance.now() - drainStarted).toBeLessThan(5_000);
    expect(w.backlog).toBe(0);
    expect(statusOf(name).reported?.$version).toBe(3);
    w.close();
    expect(w.offer(name, { report: report(4, { v: 4 }) })).toBe(false);
    expect(w.backlog).toBe(0);
    // The minute-long timer of the change drain wrote is gone too: nothing keeps a stopped hub alive.
    expect(await activeTimers()).toBe(before);
  });

  it('drain gives up at its deadline while a write is still on its way; that write lands all the same', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const gate = api.hold((r) => r.verb === 'patch' && r.subresource === 'status' && r.name === name);
    cleanups.push(() => gate.open());
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    cleanups.push(() => vi.useRealTimers());
    const { w } = writer();
    w.offer(name, { report: report(1, { v: 1 }) });
    let drained = false;
    void w.drain(1_000).then(() => {
      drained = true;
    });
    await untilIo(() => gate.waiting === 1, 'the write held at the server');
    await vi.advanceTimersByTimeAsync(999);
    expect(drained).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(drained).toBe(true);
    // Not given up on: the Device is still being written.
    expect(w.backlog).toBe(1);
    gate.open();
    await untilIo(() => w.backlog === 0 && statusWrites(name) === 1, 'the write');
    expect(statusOf(name).reported?.$version).toBe(1);
  });
  it('no timer outlives what it was for: one per waiting Device, none once it is forgotten or the writer closed', async () => {
    const { w } = writer();
    const before = await activeTimers();
    w.offer('a', { report: report(1, { v: 1 }) });
    w.offer('a', { report: report(2, { v: 2 }) });
    expect(await activeTimers()).toBe(before + 1);
    w.offer('b', { report: report(1, { v: 1 }) });
    expect(await activeTimers()).toBe(before + 2);
    w.forget('a');
    expect(await activeTimers()).toBe(before + 1);
    expect(w.backlog).toBe(1);
    w.close();
    expect(await activeTimers()).toBe(before);
  });

  it('the first change of a quiet Device goes after a 100-ms settle, the next an interval after the write; a forgotten one starts afresh', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    cleanups.push(() => vi.useRealTimers());
    // When a write of the Device began: it reads the freshest copy (at the start, and once answered).
    const asked = new Set<number>();
    const { w } = writer({
      intervalMs: 1_000,
      known: (n) => {
        asked.add(performance.now());
        return stored(n);
      },
    });
    const t0 = performance.now();
    w.offer(name, { report: report(1, { v: 1 }) });
    await vi.advanceTimersByTimeAsync(99);
    expect([...asked]).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await untilIo(() => statusWrites(name) === 1 && w.backlog === 0, 'the first write');
    expect([...asked]).toEqual([t0 + 100]);
    // The next change waits an interval (1 s) after the write was sent.
    w.offer(name, { report: report(2, { v: 2 }) });
    await vi.advanceTimersByTimeAsync(999);
    expect([...asked]).toEqual([t0 + 100]);
    await vi.advanceTimersByTimeAsync(1);
    await untilIo(() => statusWrites(name) === 2 && w.backlog === 0, 'the second write');
    expect([...asked]).toEqual([t0 + 100, t0 + 1_100]);
    // Forgotten (the Device was deleted) and seen again: a quiet Device, written after the settle.
    w.forget(name);
    w.offer(name, { report: report(3, { v: 3 }) });
    await vi.advanceTimersByTimeAsync(100);
    await untilIo(() => statusWrites(name) === 3 && w.backlog === 0, 'the write after forget');
    expect([...asked]).toEqual([t0 + 100, t0 + 1_100, t0 + 1_200]);
    expect(statusOf(name).reported?.$version).toBe(3);
  });

  it('writes at most `concurrency` Devices at once; setConcurrency changes the limit at once', async () => {
    const names = [1, 2, 3, 4, 5].map(() => seed({ online: true, lastSeen: T0 }));
    const { w, lines, metrics } = writer({ intervalMs: 50, concurrency: 2 });
    const gate = api.hold((r) => r.verb === 'patch' && r.subresource === 'status');
    cleanups.push(() => gate.open());
    for (const n of names) w.offer(n, { report: report(1, { v: 1 }) });
    await until(() => gate.waiting === 2, 10_000, 'two writes');
    w.setConcurrency(4);
    await until(() => gate.waiting === 4, 10_000, 'four writes');
    // The two more writes went while the first two were still held: none of those had to give up first
    // (after the client's 5-s timeout, which the writer would take for an outage).
    expect(lines.filter((l) => l.msg === 'API server unreachable; Device status writes wait')).toEqual([]);
    gate.open();
    await until(() => w.backlog === 0, 10_000, 'every write');
    // Five Devices, never more than four writes at once; each written once, none written again for nothing.
    expect(gate.peak).toBe(4);
    expect(metrics).toMatchObject({ apiWrites: 5, writesSkipped: 0 });
    for (const n of names) expect(statusOf(n).reported?.$version).toBe(1);
  });

  it('one write per Device at a time: a change that comes during a write waits for it', async () => {
    const a = seed({ online: true, lastSeen: T0 });
    const c = seed({ online: true, lastSeen: T0 });
    const { w } = writer({ intervalMs: 50 });
    const gate = api.hold((r) => r.verb === 'patch' && r.subresource === 'status');
    cleanups.push(() => gate.open());
    w.offer(a, { report: report(1, { v: 1 }) });
    await until(() => gate.waiting === 1, 10_000, 'the first write of a');
    w.offer(a, { report: report(2, { v: 2 }) });
    // Offered after a's change, c is written no sooner than a second write of a would be.
    w.offer(c, { report: report(1, { v: 1 }) });
    await until(() => gate.waiting === 2, 10_000, 'the write of c');
    expect(api.requests({ verb: 'patch', subresource: 'status', name: a })).toHaveLength(1);
    gate.open();
    await until(
      () => w.backlog === 0 && statusOf(a).reported?.$version === 2,
      10_000,
      'the second write of a',
    );
    expect(statusWrites(a)).toBe(2);
  });

  it('a write that keeps conflicting is re-read and tried 6 times, then retried after a backoff like a 5xx', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const { w, metrics, refused } = writer({ intervalMs: 50 });
    api.failNext(6, 409, { verb: 'patch' });
    w.offer(name, { report: report(1, { fw: '1.0' }) });
    await until(() => w.backlog === 0 && statusOf(name).reported?.$version === 1, 10_000, 'the write');
    expect(metrics).toMatchObject({ apiWriteConflicts: 5, apiWriteFailures: 1, apiWrites: 7 });
    // One re-read for each conflict retried at once; none after the sixth.
    expect(api.requests({ verb: 'get', resource: 'devices', name })).toHaveLength(5);
    expect(refused).toEqual([]);
  });

  it("writes against the newer of the watch's copy and its own last answer", async () => {
    const name = seed({ online: true, lastSeen: T0 });
    let copy = structuredClone(stored(name));
    const { w, metrics } = writer({ intervalMs: 50, known: () => copy });
    const written = (v: number) => w.backlog === 0 && statusOf(name).reported?.$version === v;
    // The watch's events come for Devices the writer has not written yet too.
    w.observed(copy);
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(() => written(1), 10_000, 'the first write');
    // The watch delivers an event older than the answer: the answer stays the copy to write against.
    w.observed(copy);
    w.offer(name, { report: report(2, { v: 2 }) });
    await until(() => written(2), 10_000, 'the second write');
    expect(metrics.apiWriteConflicts).toBe(0);
    // Another writer changes the status and the watch sees it: now the watch's copy is the newer one.
    patchStatus(name, { online: false });
    copy = structuredClone(stored(name));
    w.offer(name, { report: report(3, { v: 3 }) });
    await until(() => written(3), 10_000, 'the third write');
    w.observed(copy);
    w.offer(name, { report: report(4, { v: 4 }) });
    await until(() => written(4), 10_000, 'the fourth write');
    expect(metrics.apiWriteConflicts).toBe(0);
    expect(metrics.apiWrites).toBe(4);
    expect(statusOf(name)).toMatchObject({ online: false, reported: { v: 4, $version: 4 } });
  });

  it('a state no patch can be made of (an invalid time) is reported, not retried, and holds up no other Device', async () => {
    const bad = seed({ online: true, lastSeen: T0 });
    const good = seed({ online: true, lastSeen: T0 });
    const { w, metrics, refused } = writer({ intervalMs: 50 });
    w.offer(bad, { presence: presence(true, 1, { receivedAt: Number.NaN }) });
    w.offer(good, { presence: presence(true, 1) });
    await until(() => w.backlog === 0 && refused.length === 1 && statusWrites(good) === 1, 10_000, 'both');
    expect(refused).toEqual([[bad, 'cannot compute the status patch: Invalid time value']]);
    expect(metrics.apiWriteFailures).toBe(1);
    expect(statusWrites(bad)).toBe(0);
    expect(statusOf(good).conditions?.[0]?.status).toBe('True');
  });
  it('a Device the watch loses while its write is on its way is written all the same, and not refused', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    let watched = true;
    const { w, metrics, refused } = writer({
      intervalMs: 50,
      known: (n) => (watched ? stored(n) : undefined),
    });
    // The watch drops the Device (a re-list, say) between the write and its answer.
    api.beforeNext({ verb: 'patch', subresource: 'status', name }, () => {
      watched = false;
    });
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(() => w.backlog === 0 && statusWrites(name) === 1, 10_000, 'the write');
    expect(refused).toEqual([]);
    expect(metrics).toMatchObject({ apiWrites: 1, apiWriteFailures: 0, reportedWritten: 1 });
  });
  it('a write that ends after close leaves no timer behind, even with a change waiting', async () => {
    const name = seed({ online: true, lastSeen: T0 });
    const { w, metrics } = writer({ intervalMs: 50 });
    const gate = api.hold((r) => r.verb === 'patch' && r.subresource === 'status' && r.name === name);
    cleanups.push(() => gate.open());
    w.offer(name, { report: report(1, { v: 1 }) });
    await until(() => gate.waiting === 1, 10_000, 'the write');
    const before = await activeTimers();
    w.offer(name, { report: report(2, { v: 2 }) });
    w.close();
    gate.open();
    // The write ends (its answer counted), and the change that waited for it gets no timer: a stopped hub's
    // process can exit.
    await until(() => metrics.reportedWritten === 1, 10_000, 'the write answered');
    await until(async () => (await activeTimers()) === before, 10_000, 'no timer left');
    expect(statusOf(name).reported?.$version).toBe(1);
  });
});
