// What `npm run bench -- registry` writes and with what: its Devices, the wanted state and the changes the
// outage brings, the two writers (KubeDeviceStore as the agent runs it, and the bench-local naive baseline),
// and the client-side connection counter. Shared by the test-double run (bench/registry.ts) and the real
// kube-apiserver run (bench/registryReal.ts).
import dc from 'node:diagnostics_channel';
import { setMaxListeners } from 'node:events';
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { isDeepStrictEqual } from 'node:util';
import {
  ApiException,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { API_GROUP, API_VERSION, type DeviceObject } from '../../src/model/resources.js';
import { KubeDeviceStore } from '../../src/registry/kubeDeviceStore.js';
import { createLogger } from '../../src/util/logger.js';
import { now, sleep } from './util.js';

export const CONFIG = 'cams';
const T0 = '2026-01-01T00:00:00Z';

export const PARAMS = {
  devices: 1_000,
  burst: { devices: 200, changes: 10, spanMs: 100, slowMs: 200 },
  outage: {
    /**
     * 60 s. What decides the recovery is KubeDeviceStore's state at up(): its probe (which every queued write
     * waits on) and its watch back off 250 ms … 5 s, at their ceiling after at most 7.75 s down; its longest
     * backoff (500 ms … 30 s: answered failures, DiscoveryConfig lookups) after 31.5 s. From then on nothing in
     * it changes with the outage's length (changes queue as the newest state per Device), so a longer outage
     * measures the same recovery; `--outage-s 600` runs the 10 minutes that used to be the default.
     */
    defaultS: 60,
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
  baseline: {
    retryMs: 1_000,
    writes:
      'new Device: POST then merge PATCH /status; status change: merge PATCH /status (no resourceVersion); ' +
      'vanished: DELETE; each change written, in order per Device; a failed request retried every retryMs',
  },
};

export const TARGETS = { writesPerBurst: 1, extraWritesAfterOutage: 0, convergeS: 30 };

// ------------------------------------------------------------------------------------------ devices

export const name = (prefix: 'd' | 'n', i: number) => `${prefix}${String(i).padStart(4, '0')}`;

/** A Device as the discovery manager builds one (the owner reference without uid, as the store expects). */
export function deviceObject(
  deviceName: string,
  online = true,
  message = 'seen by onvif on edge-1',
  namespace = 'default',
): DeviceObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: {
      name: deviceName,
      namespace,
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

/** What the phases ask of a writer: the KubeDeviceStore calls this bench uses, and the baseline's. */
export interface Writer {
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
export class LogCounter extends Writable {
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
export class Connections {
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

export async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (!done()) {
    if (now() > deadline) return false;
    await sleep(PARAMS.pollMs);
  }
  return true;
}

/** KubeDeviceStore as the agent runs it (its defaults), through start/upsert/delete/pending/close only. */
export async function storeWriter(kubeConfig: KubeConfig, namespace: string): Promise<Writer> {
  const log = new LogCounter();
  const store = new KubeDeviceStore({
    kubeConfig,
    namespace,
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

/**
 * The baseline (written here, not a peer product): one request per change, no coalescing, in order per Device,
 * each retried every `retryMs`.
 */
export class NaiveWriter implements Writer {
  private readonly api: CustomObjectsApi;
  private readonly queues = new Map<string, Promise<void>>();
  private readonly created = new Set<string>();
  private readonly closing = new AbortController();
  private inFlight = 0;
  private noAnswer = 0;
  private readonly resource: { group: string; version: string; namespace: string; plural: string };

  constructor(
    kubeConfig: KubeConfig,
    namespace: string,
    private readonly configUid: string,
  ) {
    this.resource = { group: API_GROUP, version: 'v1alpha1', namespace, plural: 'devices' };
    this.api = kubeConfig.makeApiClient(CustomObjectsApi);
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
        await sleep(PARAMS.baseline.retryMs);
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

/** What a run of the phases keeps: the wanted state, its writer, and every write promise it made. */
export interface Wanted {
  writer: Writer;
  /** The wanted state: what the server must end up holding. */
  truth: Map<string, DeviceObject>;
  /** Every write promise, so none is left unhandled when the writer closes. */
  calls: Promise<unknown>[];
}

export function put(side: Wanted, o: DeviceObject): Promise<unknown> {
  side.truth.set(o.metadata.name, o);
  const p = side.writer.upsert(o);
  side.calls.push(p.catch(() => {}));
  return p;
}

export function remove(side: Wanted, deviceName: string): Promise<unknown> {
  side.truth.delete(deviceName);
  const p = side.writer.delete(deviceName);
  side.calls.push(p.catch(() => {}));
  return p;
}

export interface Diff {
  missing: number;
  extra: number;
  stale: number;
}

/** Stored Devices (read in the server's storage: not logged, not counted) against the wanted state. */
export function diffStored(stored: DeviceObject[], truth: Map<string, DeviceObject>): Diff {
  let stale = 0;
  let extra = 0;
  for (const o of stored) {
    const want = truth.get(o.metadata.name);
    if (!want) extra++;
    else if (
      !isDeepStrictEqual(o.status, want.status) ||
      !isDeepStrictEqual(o.spec, want.spec) ||
      !isDeepStrictEqual(o.metadata.labels ?? {}, want.metadata.labels)
    )
      stale++;
  }
  return { missing: truth.size - (stored.length - extra), extra, stale };
}

export const converged = (d: Diff) => d.missing === 0 && d.extra === 0 && d.stale === 0;

/** Write requests each Device needs: create + status for a new one, one per changed part, a delete. */
export function minimumWrites(
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
export function waveA(side: Wanted, namespace = 'default'): number {
  const { vanish, added } = PARAMS.outage;
  for (let i = 0; i < vanish; i++) remove(side, name('d', i));
  for (let i = 0; i < added; i++)
    put(side, deviceObject(name('n', i), true, 'new during the outage', namespace));
  for (let i = 100; i < 300; i++) put(side, deviceObject(name('d', i), false, 'outage wave A', namespace));
  return vanish + added + 200;
}

export function waveB(side: Wanted, namespace = 'default'): number {
  for (let i = 200; i < 400; i++)
    put(side, deviceObject(name('d', i), i % 2 === 0, 'outage wave B', namespace));
  for (let i = 50; i < 100; i++) put(side, deviceObject(name('n', i), false, 'outage wave B', namespace));
  return 250;
}
