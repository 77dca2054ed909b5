// `npm run bench -- registry [--outage-s N]`: what the Kubernetes-backed device registry (KubeDeviceStore) costs
// the API server, and how fast it puts the server right after an outage.
//   (1) steady state: 1,000 new Devices upserted at once: time until every write landed, API writes per device
//       split by verb and subresource (the Device CRD has a status subresource, so a create ignores status and
//       a new Device costs a create plus a /status write), and the reads that came with them
//   (2) change bursts: 200 Devices, 10 status flips each within ~100 ms; API writes per Device per burst (mean,
//       max, the worst Device), once against a fast server and once against one that delays every request
//   (3) outage: 1,000 Devices stored, the server taken down (down()) for `--outage-s` (default 600 s, the issue's
//       10 minutes); during it 100 Devices vanish, 100 are new and 300 change status (two waves); then up() and
//       the time until the server's stored objects equal the wanted state exactly (none missing, none extra,
//       none stale), polled in the server's storage every `pollMs`; writes after up() against the fewest that
//       could do it; connection attempts during the outage (refused, so the server cannot log them: counted
//       on this process's client sockets through the net.client.socket diagnostics channel)
// The peer, in the same run: a naive writer (bench-local, below) that sends one request per change through
// client-node, with no coalescing, per Device in order, each request retried every second until it lands. It
// runs the same three phases against its own test API server; its outage runs at the same time as the
// store's (both servers go down and up together), the other phases one after the other.
// Everything is in this process, on 127.0.0.1: the test API server (test/helpers/kubeApiServer.ts: the real
// REST/watch protocol, in memory; every request it answers is in its request log) and the writers.
import dc from 'node:diagnostics_channel';
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { builtinHandlers } from '../src/discovery/handlers.js';
import { API_GROUP, API_VERSION, type DeviceObject } from '../src/discovery/types.js';
import { crdManifests } from '../src/kube/crds.js';
import { KubeDeviceStore } from '../src/registry/kubeStore.js';
import { createLogger } from '../src/util/logger.js';
import { KubeApiServer, type RequestRecord } from '../test/helpers/kubeApiServer.js';
import type { BenchOptions } from './lib/options.js';
import { fmt, printTail, type Row, type Target, table, target, writeResults } from './lib/report.js';
import { machineInfo, now, round1, sleep } from './lib/util.js';

/** `--outage-s N` on the command line: how long the outage lasts (default PARAMS.outage.defaultS). */
export type RegistryBenchOptions = BenchOptions & { outageS?: number };

const NS = 'default';
const CONFIG = 'cams';
const T0 = '2026-01-01T00:00:00Z';

const PARAMS = {
  devices: 1_000,
  burst: { devices: 200, changes: 10, spanMs: 100, slowMs: 200 },
  outage: {
    defaultS: 600,
    vanish: 100,
    added: 100,
    waveA: 'd0100–d0299 status changed as the outage starts',
    waveB: 'd0200–d0399 and n0050–n0099 status changed half-way through it',
  },
  pollMs: 20,
  timeouts: { steadyMs: 120_000, burstMs: 60_000, convergeMs: 300_000, confirmMs: 60_000 },
  store: {
    options: 'KubeDeviceStore defaults (no backoff, probe or concurrency option given), as the agent runs it',
    logger: 'pino at warn, its lines counted by message',
  },
  peer: {
    retryMs: 1_000,
    writes:
      'new Device: POST then merge PATCH /status; status change: merge PATCH /status (no resourceVersion); ' +
      'vanished: DELETE; each change written, in order per Device; a failed request retried every retryMs',
  },
};

const TARGETS = { writesPerBurst: 1, extraWritesAfterOutage: 0, convergeS: 30 };

// ------------------------------------------------------------------------------------------ devices

const name = (prefix: 'd' | 'n', i: number) => `${prefix}${String(i).padStart(4, '0')}`;

/** A Device as the discovery manager builds one (the owner reference without uid, as the store expects). */
function deviceObject(deviceName: string, online = true, message = 'seen by onvif on edge-1'): DeviceObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: {
      name: deviceName,
      namespace: NS,
      uid: '',
      creationTimestamp: T0,
      resourceVersion: '',
      labels: { 'leafbridge.io/config': CONFIG, 'leafbridge.io/handler': 'onvif' },
      ownerReferences: [{ apiVersion: API_VERSION, kind: 'DiscoveryConfig', name: CONFIG }],
    },
    spec: {
      id: `urn:uuid:${deviceName}`,
      configName: CONFIG,
      handler: 'onvif',
      shared: true,
      nodes: ['edge-1'],
      capacity: 1,
      properties: { ONVIF_IP: '10.0.0.1' },
      deviceNodes: [],
      mounts: [],
    },
    status: {
      online,
      lastSeen: T0,
      conditions: [
        {
          type: 'Online',
          status: online ? 'True' : 'False',
          reason: 'Discovered',
          message,
          lastTransitionTime: T0,
        },
      ],
    },
  };
}

// ------------------------------------------------------------------------------------------ writers

/** What the phases ask of a writer: the KubeDeviceStore calls this bench uses, and the peer's. */
interface Writer {
  upsert(object: DeviceObject): Promise<unknown>;
  delete(deviceName: string): Promise<unknown>;
  /** Resolves once every write asked for is confirmed (the store: `pending` is 0). */
  idle(timeoutMs: number): Promise<boolean>;
  /** Failed attempts so far that got no answer (server down), as far as they can be seen. */
  failedAttempts(): number;
  /** The writer's own log lines, counted (the store only). */
  log?: LogCounter;
  close(): Promise<void>;
}

/** Counts pino's lines by message (the store logs each failed attempt at warn). */
class LogCounter extends Writable {
  readonly byMsg = new Map<string, number>();
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      try {
        const msg = String((JSON.parse(line) as { msg?: unknown }).msg);
        this.byMsg.set(msg, (this.byMsg.get(msg) ?? 0) + 1);
      } catch {
        this.byMsg.set('(unparsed)', (this.byMsg.get('(unparsed)') ?? 0) + 1);
      }
    }
    done();
  }
  total(): number {
    return [...this.byMsg.values()].reduce((a, b) => a + b, 0);
  }
}

/**
 * TCP connections this process opens, by server port: made, and refused (the server down). A refused
 * connection never reaches the server's request log, so this is how attempts during the outage are counted.
 */
class Connections {
  readonly made = new Map<number, number>();
  readonly refused = new Map<number, number>();
  private readonly onSocket = (message: unknown) => {
    const socket = (message as { socket: Socket }).socket;
    socket.once('connect', () => bump(this.made, socket.remotePort ?? 0));
    socket.once('error', (err: NodeJS.ErrnoException & { port?: number }) => {
      if (err.code === 'ECONNREFUSED') bump(this.refused, err.port ?? 0);
    });
  };
  start(): void {
    dc.subscribe('net.client.socket', this.onSocket);
  }
  stop(): void {
    dc.unsubscribe('net.client.socket', this.onSocket);
  }
}

const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);

async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (!done()) {
    if (now() > deadline) return false;
    await sleep(PARAMS.pollMs);
  }
  return true;
}

/** KubeDeviceStore as the agent runs it (its defaults), through start/upsert/delete/pending/close only. */
async function storeWriter(api: KubeApiServer): Promise<Writer> {
  const log = new LogCounter();
  const store = new KubeDeviceStore({
    kubeConfig: kubeConfigFor(api),
    namespace: NS,
    logger: createLogger({ level: 'warn', destination: log }),
  });
  await store.start();
  return {
    log,
    upsert: (o) => store.upsert(o),
    delete: (n) => store.delete(n),
    idle: (ms) => until(() => store.pending === 0, ms),
    failedAttempts: () => log.total(),
    close: () => store.close(),
  };
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const codeOf = (err: unknown) => (err instanceof ApiException ? (err.code as number) : undefined);

/** The peer: one request per change, no coalescing, in order per Device, each retried every `retryMs`. */
class NaiveWriter implements Writer {
  private readonly api: CustomObjectsApi;
  private readonly queues = new Map<string, Promise<void>>();
  private readonly created = new Set<string>();
  private readonly closing = new AbortController();
  private inFlight = 0;
  private noAnswer = 0;
  private readonly resource = { group: API_GROUP, version: 'v1alpha1', namespace: NS, plural: 'devices' };

  constructor(
    server: KubeApiServer,
    private readonly configUid: string,
  ) {
    this.api = kubeConfigFor(server).makeApiClient(CustomObjectsApi);
    setMaxListeners(0, this.closing.signal);
  }

  upsert(o: DeviceObject): Promise<void> {
    const n = o.metadata.name;
    return this.queue(n, async () => {
      if (!this.created.has(n)) {
        await this.retry(() => this.create(o));
        this.created.add(n);
      }
      await this.retry(() => this.patchStatus(o));
    });
  }

  delete(n: string): Promise<void> {
    return this.queue(n, async () => {
      await this.retry(() => this.remove(n));
      this.created.delete(n);
    });
  }

  idle(timeoutMs: number): Promise<boolean> {
    return until(() => this.inFlight === 0, timeoutMs);
  }

  failedAttempts(): number {
    return this.noAnswer;
  }

  async close(): Promise<void> {
    this.closing.abort();
  }

  private queue(n: string, op: () => Promise<void>): Promise<void> {
    this.inFlight++;
    const next = (this.queues.get(n) ?? Promise.resolve()).then(op).finally(() => this.inFlight--);
    this.queues.set(
      n,
      next.catch(() => {}),
    );
    return next;
  }

  private async retry(request: () => Promise<unknown>): Promise<void> {
    for (;;) {
      if (this.closing.signal.aborted) throw new Error('closed');
      try {
        await request();
        return;
      } catch (err) {
        if (codeOf(err) === undefined) this.noAnswer++;
        await sleep(PARAMS.peer.retryMs);
      }
    }
  }

  private async create(o: DeviceObject): Promise<void> {
    const ownerReferences = o.metadata.ownerReferences.map((r) => ({ ...r, uid: this.configUid }));
    const metadata = { name: o.metadata.name, labels: o.metadata.labels, ownerReferences };
    const body = { apiVersion: o.apiVersion, kind: o.kind, metadata, spec: o.spec };
    try {
      await this.api.createNamespacedCustomObject({ ...this.resource, body });
    } catch (err) {
      if (codeOf(err) !== 409) throw err; // AlreadyExists: an earlier try landed, its answer was lost
    }
  }

  private async patchStatus(o: DeviceObject): Promise<void> {
    const body = { status: o.status };
    await this.api.patchNamespacedCustomObjectStatus(
      { ...this.resource, name: o.metadata.name, body },
      mergePatch,
    );
  }

  private async remove(n: string): Promise<void> {
    try {
      await this.api.deleteNamespacedCustomObject({ ...this.resource, name: n });
    } catch (err) {
      if (codeOf(err) !== 404) throw err;
    }
  }
}

function kubeConfigFor(api: KubeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig(NS));
  return kc;
}

// ---------------------------------------------------------------------------------- one side's world

interface Side {
  label: 'leafbridge' | 'peer';
  api: KubeApiServer;
  writer: Writer;
  /** The wanted state: what the server must end up holding. */
  truth: Map<string, DeviceObject>;
  /** Every write promise, so none is left unhandled when the writer closes. */
  calls: Promise<unknown>[];
}

async function startSide(label: Side['label']): Promise<Side> {
  const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
  const config = api.seed('discoveryconfigs', {
    apiVersion: API_VERSION,
    kind: 'DiscoveryConfig',
    metadata: { name: CONFIG, namespace: NS },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } } },
  });
  const writer = label === 'leafbridge' ? await storeWriter(api) : new NaiveWriter(api, config.metadata.uid);
  return { label, api, writer, truth: new Map(), calls: [] };
}

function put(side: Side, o: DeviceObject): Promise<unknown> {
  side.truth.set(o.metadata.name, o);
  const p = side.writer.upsert(o);
  side.calls.push(p.catch(() => {}));
  return p;
}

function remove(side: Side, deviceName: string): Promise<unknown> {
  side.truth.delete(deviceName);
  const p = side.writer.delete(deviceName);
  side.calls.push(p.catch(() => {}));
  return p;
}

const WRITES = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);
const isWrite = (r: RequestRecord) => WRITES.has(r.verb);
const verbKey = (r: RequestRecord) =>
  `${r.verb}${r.subresource ? `/${r.subresource}` : ''} ${r.resource ?? '(discovery)'}`;

/** Requests in the server's log by verb[/subresource] and resource, e.g. `patch/status devices: 1000`. */
function requestSplit(api: KubeApiServer): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of api.requests()) out[verbKey(r)] = (out[verbKey(r)] ?? 0) + 1;
  return out;
}

/** Write requests to Devices per Device name, from the server's log. */
function writesByDevice(api: KubeApiServer): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of api.requests({ resource: 'devices' }))
    if (isWrite(r) && r.name) out.set(r.name, (out.get(r.name) ?? 0) + 1);
  return out;
}

interface Diff {
  missing: number;
  extra: number;
  stale: number;
}

/** The server's stored Devices against the wanted state (read in its storage, not copied, not logged). */
function diff(side: Side): Diff {
  const stored = side.api.store.all(side.api.type('devices'), NS);
  let stale = 0;
  let extra = 0;
  for (const o of stored) {
    const want = side.truth.get(o.metadata.name);
    if (!want) extra++;
    else if (
      !isDeepStrictEqual(o.status, want.status) ||
      !isDeepStrictEqual(o.spec, want.spec) ||
      !isDeepStrictEqual(o.metadata.labels ?? {}, want.metadata.labels)
    )
      stale++;
  }
  return { missing: side.truth.size - (stored.length - extra), extra, stale };
}

const converged = (d: Diff) => d.missing === 0 && d.extra === 0 && d.stale === 0;

// ------------------------------------------------------------------------------------- (1) steady state

interface Steady {
  ms: number | undefined;
  writes: number;
  writesPerDevice: number;
  requests: Record<string, number>;
  matches: boolean;
}

async function steady(side: Side): Promise<Steady> {
  side.api.clearLog();
  const t0 = now();
  const all = [];
  for (let i = 0; i < PARAMS.devices; i++) all.push(put(side, deviceObject(name('d', i))));
  await Promise.all(all);
  const done = await side.writer.idle(PARAMS.timeouts.steadyMs);
  const ms = done ? round1(now() - t0) : undefined;
  const writes = side.api.writes('devices');
  return {
    ms,
    writes,
    writesPerDevice: writes / PARAMS.devices,
    requests: requestSplit(side.api),
    matches: converged(diff(side)),
  };
}

// --------------------------------------------------------------------------------------- (2) bursts

interface Burst {
  slowMs: number;
  /** From the first change to the last one asked for. */
  issuedMs: number;
  ms: number | undefined;
  writes: number;
  meanPerDevice: number;
  maxPerDevice: number;
  worstDevice: string | undefined;
  /** Devices by write count: { "2": 180, "3": 20 }. */
  histogram: Record<string, number>;
  requests: Record<string, number>;
  lastStateWins: boolean;
}

async function burst(side: Side, round: number, slowMs: number): Promise<Burst> {
  const { devices, changes, spanMs } = PARAMS.burst;
  const step = Math.floor(PARAMS.devices / devices);
  const names = Array.from({ length: devices }, (_, i) => name('d', i * step));
  side.api.clearLog();
  side.api.slow(slowMs);
  const t0 = now();
  const calls: Promise<unknown>[] = [];
  for (let k = 0; k < changes; k++) {
    const message = `burst ${round} change ${k}`;
    for (const n of names) calls.push(put(side, deviceObject(n, k % 2 === 1, message)));
    if (k < changes - 1) await sleep(spanMs / (changes - 1));
  }
  const issuedMs = round1(now() - t0);
  await Promise.all(calls);
  const done = await side.writer.idle(PARAMS.timeouts.burstMs);
  const ms = done ? round1(now() - t0) : undefined;
  side.api.slow(0);
  const per = writesByDevice(side.api);
  const counts = names.map((n) => per.get(n) ?? 0);
  const max = Math.max(...counts);
  const histogram: Record<string, number> = {};
  for (const c of counts) histogram[c] = (histogram[c] ?? 0) + 1;
  return {
    slowMs,
    issuedMs,
    ms,
    writes: counts.reduce((a, b) => a + b, 0),
    meanPerDevice: counts.reduce((a, b) => a + b, 0) / counts.length,
    maxPerDevice: max,
    worstDevice: names[counts.indexOf(max)],
    histogram,
    requests: requestSplit(side.api),
    lastStateWins: converged(diff(side)),
  };
}

// --------------------------------------------------------------------------------------- (3) outage

interface Outage {
  outageS: number;
  changes: number;
  /** Write requests the fewest that could bring the server from its state at down() to the wanted one. */
  minimumWrites: number;
  /** Connections refused during the outage: requests that could not be sent (the server logs none of them). */
  refusedDuringOutage: number;
  /** Requests that got no answer as the writer itself reports them (the store: its warn lines). */
  failedAttemptsDuringOutage: number;
  firstRequestMs: number | undefined;
  firstWriteOkMs: number | undefined;
  watchBackMs: number | undefined;
  convergedMs: number | undefined;
  confirmedMs: number | undefined;
  left: Diff;
  writesAfterUp: number;
  writesPerChange: number;
  worstExtra: { device: string | undefined; writes: number; minimum: number };
  recreated: number;
  requestsAfterUp: Record<string, number>;
  /** The store's warn lines by message (leafbridge only). */
  logged?: Record<string, number>;
}

/** Write requests each Device needs: create + status for a new one, one per changed part, a delete. */
function minimumWrites(
  before: Map<string, DeviceObject>,
  truth: Map<string, DeviceObject>,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const [n, want] of truth) {
    const had = before.get(n);
    if (!had) out.set(n, 2);
    else
      out.set(
        n,
        (isDeepStrictEqual(had.spec, want.spec) ? 0 : 1) +
          (isDeepStrictEqual(had.status, want.status) ? 0 : 1),
      );
  }
  for (const n of before.keys()) if (!truth.has(n)) out.set(n, 1);
  return out;
}

/** The truth changes the outage brings: wave A at its start, wave B half-way. Returns the changes made. */
function waveA(side: Side): number {
  const { vanish, added } = PARAMS.outage;
  for (let i = 0; i < vanish; i++) remove(side, name('d', i));
  for (let i = 0; i < added; i++) put(side, deviceObject(name('n', i), true, 'new during the outage'));
  for (let i = 100; i < 300; i++) put(side, deviceObject(name('d', i), false, 'outage wave A'));
  return vanish + added + 200;
}

function waveB(side: Side): number {
  for (let i = 200; i < 400; i++) put(side, deviceObject(name('d', i), i % 2 === 0, 'outage wave B'));
  for (let i = 50; i < 100; i++) put(side, deviceObject(name('n', i), false, 'outage wave B'));
  return 250;
}

interface Watching {
  firstRequestMs?: number;
  firstWriteOkMs?: number;
  watchBackMs?: number;
  convergedMs?: number;
  left: Diff;
}

/** After up(): polls the request log and the storage until the server holds the wanted state. */
async function watchRecovery(side: Side, upAt: number): Promise<Watching> {
  const w: Watching = { left: diff(side) };
  const deadline = upAt + PARAMS.timeouts.convergeMs;
  while (now() < deadline) {
    const t = round1(now() - upAt);
    const log = side.api.requests();
    if (w.firstRequestMs === undefined && log.length > 0) w.firstRequestMs = t;
    if (w.firstWriteOkMs === undefined && log.some((r) => isWrite(r) && r.status >= 200 && r.status < 300))
      w.firstWriteOkMs = t;
    if (w.watchBackMs === undefined && side.api.openWatches > 0) w.watchBackMs = t;
    w.left = diff(side);
    if (converged(w.left)) {
      w.convergedMs = t;
      return w;
    }
    await sleep(PARAMS.pollMs);
  }
  return w;
}

/** One side's state as the outage starts, and what it did while the server was down. */
interface Before {
  stored: Map<string, DeviceObject>;
  uids: Map<string, string>;
  attempts: number;
  refused: number;
  changes: number;
}

function beforeOutage(side: Side, connections: Connections): Before {
  const objects = side.api.objects('devices', NS) as unknown as DeviceObject[];
  return {
    stored: new Map(objects.map((o) => [o.metadata.name, o])),
    uids: new Map(objects.map((o) => [o.metadata.name, o.metadata.uid])),
    attempts: side.writer.failedAttempts(),
    refused: connections.refused.get(side.api.port) ?? 0,
    changes: 0,
  };
}

/** Both sides' servers go down together, take the same changes, and come up together. */
async function outage(
  sides: Side[],
  outageS: number,
  connections: Connections,
  log: (s: string) => void,
): Promise<Outage[]> {
  const before = sides.map((s) => beforeOutage(s, connections));
  await Promise.all(sides.map((s) => s.api.down()));
  log(`  (3) servers down for ${outageS} s; wave A of changes`);
  sides.forEach((s, i) => {
    (before[i] as Before).changes += waveA(s);
  });
  await sleep((outageS * 1000) / 2);
  log('  (3) wave B of changes');
  sides.forEach((s, i) => {
    (before[i] as Before).changes += waveB(s);
  });
  await sleep((outageS * 1000) / 2);
  const during = sides.map((s, i) => ({
    failed: s.writer.failedAttempts() - (before[i] as Before).attempts,
    refused: (connections.refused.get(s.api.port) ?? 0) - (before[i] as Before).refused,
  }));
  for (const s of sides) s.api.clearLog();
  await Promise.all(sides.map((s) => s.api.up()));
  const upAt = now();
  log('  (3) servers up; waiting for the wanted state');
  return Promise.all(
    sides.map(async (s, i) => {
      const seen = await watchRecovery(s, upAt);
      const idle = await s.writer.idle(PARAMS.timeouts.confirmMs);
      const confirmedMs = idle ? round1(now() - upAt) : undefined;
      return outageResult(s, outageS, before[i] as Before, {
        ...seen,
        ...(during[i] as { failed: number; refused: number }),
        confirmedMs,
      });
    }),
  );
}

type After = Watching & { failed: number; refused: number; confirmedMs: number | undefined };

function outageResult(side: Side, outageS: number, before: Before, after: After): Outage {
  const minimum = minimumWrites(before.stored, side.truth);
  let worst = { device: undefined as string | undefined, writes: 0, minimum: 0 };
  for (const [n, writes] of writesByDevice(side.api)) {
    const min = minimum.get(n) ?? 0;
    if (writes - min > worst.writes - worst.minimum) worst = { device: n, writes, minimum: min };
  }
  const recreated = side.api.objects('devices', NS).filter((o) => {
    const uid = before.uids.get(o.metadata.name);
    return uid !== undefined && uid !== o.metadata.uid;
  }).length;
  const writesAfterUp = side.api.writes('devices');
  const logged = side.writer.log ? Object.fromEntries(side.writer.log.byMsg) : undefined;
  return {
    outageS,
    changes: before.changes,
    minimumWrites: [...minimum.values()].reduce((a, b) => a + b, 0),
    refusedDuringOutage: after.refused,
    failedAttemptsDuringOutage: after.failed,
    firstRequestMs: after.firstRequestMs,
    firstWriteOkMs: after.firstWriteOkMs,
    watchBackMs: after.watchBackMs,
    convergedMs: after.convergedMs,
    confirmedMs: after.confirmedMs,
    left: after.left,
    writesAfterUp,
    writesPerChange: writesAfterUp / before.changes,
    worstExtra: worst,
    recreated,
    requestsAfterUp: requestSplit(side.api),
    ...(logged ? { logged } : {}),
  };
}

// --------------------------------------------------------------------------------------------- report

interface Figures {
  steady: Partial<Record<Side['label'], Steady>>;
  bursts: Partial<Record<Side['label'], Burst[]>>;
  outage: Partial<Record<Side['label'], Outage>>;
}

const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? '' : `${fmt(a / b, 2)}×`;

function rows(f: Figures, targets: Target[]): Row[] {
  const [s, p] = [f.steady.leafbridge, f.steady.peer];
  const [so, po] = [f.outage.leafbridge, f.outage.peer];
  const verdict = (id: string) => {
    const t = targets.find((x) => x.id === id);
    return t ? (t.pass ? 'met' : 'MISSED') : '';
  };
  const out: Row[] = [
    row('(1) 1,000 new Devices: all written, ms', s?.ms, p?.ms, 0),
    row('(1) API writes per new Device', s?.writesPerDevice, p?.writesPerDevice, 2),
  ];
  for (const [i, b] of (f.bursts.leafbridge ?? []).entries()) {
    const pb = f.bursts.peer?.[i];
    const when = b.slowMs > 0 ? `server +${b.slowMs} ms/request` : 'fast server';
    out.push(
      row(`(2) burst, ${when}: writes/Device mean`, b.meanPerDevice, pb?.meanPerDevice, 2),
      {
        ...row(`(2) burst, ${when}: writes/Device worst`, b.maxPerDevice, pb?.maxPerDevice, 0),
        target: `≤ ${TARGETS.writesPerBurst}`,
        result: verdict(b.slowMs > 0 ? 'burstSlow' : 'burstFast'),
      },
      row(`(2) burst, ${when}: all landed, ms`, b.ms, pb?.ms, 0),
    );
  }
  out.push(
    row('(3) connections refused during the outage', so?.refusedDuringOutage, po?.refusedDuringOutage, 0),
    row('(3) up() → first request, ms', so?.firstRequestMs, po?.firstRequestMs, 0),
    row('(3) up() → first successful write, ms', so?.firstWriteOkMs, po?.firstWriteOkMs, 0),
    row('(3) up() → watch open again, ms', so?.watchBackMs, po?.watchBackMs, 0),
    {
      ...row('(3) up() → server equals wanted state, s', sec(so?.convergedMs), sec(po?.convergedMs), 1),
      target: `≤ ${TARGETS.convergeS}`,
      result: verdict('converge'),
    },
    row('(3) up() → every write confirmed, s', sec(so?.confirmedMs), sec(po?.confirmedMs), 1),
    row(
      '(3) writes after up() (fewest possible)',
      so?.writesAfterUp,
      po?.writesAfterUp,
      0,
      so?.minimumWrites,
    ),
    row('(3) writes per change made in the outage', so?.writesPerChange, po?.writesPerChange, 2),
    {
      ...row('(3) worst Device: writes beyond its fewest', extra(so), extra(po), 0),
      target: `≤ ${TARGETS.extraWritesAfterOutage}`,
      result: verdict('outageExtra'),
    },
  );
  return out;
}

const sec = (ms: number | undefined) => (ms === undefined ? undefined : ms / 1000);
const extra = (o: Outage | undefined) => (o ? o.worstExtra.writes - o.worstExtra.minimum : undefined);

function row(
  measure: string,
  a: number | undefined,
  b: number | undefined,
  digits: number,
  min?: number,
): Row {
  return {
    measure,
    leafbridge: `${fmt(a, digits)}${min === undefined ? '' : ` (${fmt(min)})`}`,
    peer: fmt(b, digits),
    ratio: ratio(a, b),
    target: '',
    result: '',
  };
}

function targetsOf(f: Figures): Target[] {
  const bursts = f.bursts.leafbridge ?? [];
  const fast = bursts.find((b) => b.slowMs === 0);
  const slow = bursts.find((b) => b.slowMs > 0);
  const o = f.outage.leafbridge;
  const worstBurst = (b: Burst | undefined) => (b?.lastStateWins ? b.maxPerDevice : undefined);
  return [
    target(
      'burstFast',
      'worst Device: API writes for one burst of changes (fast server)',
      worstBurst(fast),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'burstSlow',
      `same, server slowed by ${PARAMS.burst.slowMs} ms per request`,
      worstBurst(slow),
      '<=',
      TARGETS.writesPerBurst,
      'writes',
    ),
    target(
      'outageExtra',
      'worst Device: writes after up() beyond the fewest it needs',
      extra(o),
      '<=',
      TARGETS.extraWritesAfterOutage,
      'writes',
    ),
    target(
      'converge',
      'up() → server objects equal the wanted state',
      sec(o?.convergedMs),
      '<=',
      TARGETS.convergeS,
      's',
    ),
  ];
}

function notesOf(f: Figures): string[] {
  const notes: string[] = [];
  const s = f.steady.leafbridge;
  if (s) notes.push(`(1) leafbridge requests while creating 1,000 Devices: ${split(s.requests)}`);
  const p = f.steady.peer;
  if (p) notes.push(`(1) peer requests: ${split(p.requests)}`);
  for (const b of f.bursts.leafbridge ?? [])
    notes.push(
      `(2) leafbridge burst (server +${b.slowMs} ms): writes per Device ${JSON.stringify(b.histogram)} ` +
        `(writes: Devices); worst ${b.worstDevice}; changes asked for within ${fmt(b.issuedMs)} ms; ` +
        `last state on the server: ${b.lastStateWins ? 'yes' : 'NO'}`,
    );
  for (const [label, o] of Object.entries(f.outage)) {
    notes.push(
      `(3) ${label}: ${o.changes} changes in a ${o.outageS} s outage; requests after up(): ${split(o.requestsAfterUp)}; ` +
        `Devices recreated instead of updated: ${o.recreated}; left at the end: ${JSON.stringify(o.left)}`,
    );
    notes.push(
      `(3) ${label}: failed attempts the writer itself reported during the outage: ${o.failedAttemptsDuringOutage}`,
    );
    if (o.logged) notes.push(`(3) ${label} warn lines by message (whole run): ${JSON.stringify(o.logged)}`);
  }
  notes.push(
    '(3) connections refused: every client socket of this process to that server port that got ECONNREFUSED ' +
      '(writes, probes, lists and watches alike); the server cannot log them',
    "(3) the two sides' outages run at once, in this one process (2 CPUs shared); (1) and (2) one after the other",
  );
  return notes;
}

const split = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

// ------------------------------------------------------------------------------------------------ run

export async function runRegistry(options: RegistryBenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const outageS = options.outageS ?? PARAMS.outage.defaultS;
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const figures: Figures = { steady: {}, bursts: {}, outage: {} };
  log(
    `registry: ${PARAMS.devices} Devices, bursts of ${PARAMS.burst.changes} × ${PARAMS.burst.devices}, ${outageS} s outage`,
  );
  const sides: Side[] = [];
  const connections = new Connections();
  connections.start();
  try {
    sides.push(await startSide('leafbridge'), await startSide('peer'));
    for (const side of sides) {
      log(`  (1) ${side.label}: creating ${PARAMS.devices} Devices`);
      figures.steady[side.label] = await steady(side);
    }
    let round = 0;
    for (const slowMs of [0, PARAMS.burst.slowMs])
      for (const side of sides) {
        log(`  (2) ${side.label}: burst, server +${slowMs} ms per request`);
        const done = figures.bursts[side.label] ?? [];
        done.push(await burst(side, ++round, slowMs));
        figures.bursts[side.label] = done;
      }
    const results = await outage(sides, outageS, connections, log);
    sides.forEach((s, i) => {
      figures.outage[s.label] = results[i];
    });
  } catch (err) {
    errors.run = err instanceof Error ? (err.stack ?? err.message) : String(err);
  } finally {
    for (const s of sides) {
      await s.writer.close();
      await Promise.all(s.calls);
      await s.api.close();
    }
    connections.stop();
  }
  return report(startedAt, options, outageS, figures, errors, log);
}

function report(
  startedAt: Date,
  options: RegistryBenchOptions,
  outageS: number,
  figures: Figures,
  errors: Record<string, string>,
  log: (s: string) => void,
): boolean {
  const targets = targetsOf(figures);
  const text = table(rows(figures, targets));
  log('');
  log(text);
  const notes = notesOf(figures);
  if (options.reps !== 2) notes.push('--reps is not used: one run (the outage phase is long)');
  printTail(log, notes, {}, errors);
  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const files = writeResults('registry', startedAt, {
    machine: { ...machineInfo() },
    options: { ...options, outageS },
    params: PARAMS,
    targets,
    pass,
    results: figures,
    table: text.split('\n'),
    notes,
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`registry: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
