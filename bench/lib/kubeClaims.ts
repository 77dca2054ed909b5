// Slot claims recorded in the cluster, for the device-plugin bench: the test API server
// (test/helpers/kubeApiServer.ts: the Kubernetes REST and watch protocol, in memory, on 127.0.0.1, with a
// request log) with the CRDs and the DiscoveryConfigs the bench Devices refer to; and a node as the agent
// wires one in a cluster (src/agent.ts): a KubeDeviceStore, StoreSlotClaims over it, a DevicePluginManager
// with those claims, and a BenchKubelet in the node's own temp device-plugin directory.
// Spans: per Allocate, the time spent in the claim, in the store's `now` write and in the status PATCH's HTTP
// round trip (node:diagnostics_channel), so the bench can split an Allocate into its parts.
import dc from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { KubeConfig } from '@kubernetes/client-node';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { DevicePluginManager } from '../../src/deviceplugin/manager.js';
import type { SlotHolder, SlotRef } from '../../src/deviceplugin/slots.js';
import { StoreSlotClaims } from '../../src/deviceplugin/storeClaims.js';
import { crdManifests } from '../../src/install/crds.js';
import { API_VERSION, type DeviceObject, type SlotRecord } from '../../src/model/resources.js';
import { DeviceRegistry } from '../../src/registry/deviceRegistry.js';
import type { UpdateOptions } from '../../src/registry/deviceStore.js';
import { KubeDeviceStore, type KubeDeviceStoreOptions } from '../../src/registry/kubeDeviceStore.js';
import { silentLogger } from '../../src/util/logger.js';
import { KubeApiServer } from '../../test/helpers/kubeApiServer.js';
import { BenchKubelet } from './kubeletClient.js';
import { sleep, tempDir } from './util.js';

export const NS = 'default';

/**
 * The store options the bench nodes use: the agent's defaults, except that queued writes are not held for
 * the 200 ms quiet time. Only the releases between Allocate calls (outside the timing) are queued writes; a
 * claim is a `now` write, which goes past the coalescing either way.
 */
export const STORE_OPTIONS: Pick<KubeDeviceStoreOptions, 'coalesce'> = {
  coalesce: { quietMs: 0, maxDelayMs: 0 },
};

/** The test API server with the CRDs and the DiscoveryConfigs `bench-cams` (onvif) and `bench-serial`. */
export async function startApiServer(): Promise<KubeApiServer> {
  const api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
  const config = (name: string, handler: string, details: Record<string, unknown>) => ({
    apiVersion: API_VERSION,
    kind: 'DiscoveryConfig',
    metadata: { name, namespace: NS },
    spec: { handler: { name: handler, details } },
  });
  api.seed('discoveryconfigs', config('bench-cams', 'onvif', { interface: 'eth1' }));
  api.seed('discoveryconfigs', config('bench-serial', 'serial', { paths: ['/dev/ttyUSB*'] }));
  return api;
}

export function kubeConfigFor(api: KubeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig(NS));
  return kc;
}

/** `status.slots` of a Device as the server stores it (read from its storage, not through HTTP). */
export function serverSlots(api: KubeApiServer, device: string): Record<string, SlotRecord> {
  const status = api.object('devices', NS, device)?.status as
    | { slots?: Record<string, SlotRecord> }
    | undefined;
  return status?.slots ?? {};
}

/** Polls `check` (every ms) until it holds; throws naming `what` after `ms`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(1);
  }
}

// ------------------------------------------------------------------------------------------ spans

/** Named durations (ms) recorded since the last reset. */
export class Spans {
  private readonly spans = new Map<string, number>();

  add(name: string, ms: number): void {
    this.spans.set(name, (this.spans.get(name) ?? 0) + ms);
  }

  get(name: string): number | undefined {
    return this.spans.get(name);
  }

  reset(): void {
    this.spans.clear();
  }
}

/** The HTTP round trip of every status PATCH this process sends (client side: request start → response). */
export class StatusPatchTimer {
  private readonly started = new WeakMap<object, number>();

  constructor(private readonly spans: Spans) {}

  start(): this {
    dc.subscribe('http.client.request.start', this.onStart);
    dc.subscribe('http.client.response.finish', this.onResponse);
    return this;
  }

  stop(): void {
    dc.unsubscribe('http.client.request.start', this.onStart);
    dc.unsubscribe('http.client.response.finish', this.onResponse);
  }

  private readonly onStart = (m: unknown) => {
    const request = (m as { request: ClientRequest }).request;
    if (request.method === 'PATCH' && request.path.split('?')[0]?.endsWith('/status')) {
      this.started.set(request, performance.now());
    }
  };

  private readonly onResponse = (m: unknown) => {
    const t = this.started.get((m as { request: ClientRequest }).request);
    if (t !== undefined) this.spans.add('statusPatch', performance.now() - t);
  };
}

/** KubeDeviceStore with the time of each `now` write (a claim) recorded as `storeWrite`. */
class TimedKubeDeviceStore extends KubeDeviceStore {
  constructor(
    o: KubeDeviceStoreOptions,
    private readonly spans: Spans | undefined,
  ) {
    super(o);
  }

  override update(
    name: string,
    mutate: (current: DeviceObject | undefined) => DeviceObject | null,
    options: UpdateOptions = {},
  ): Promise<DeviceObject | undefined> {
    const spans = this.spans;
    if (!options.now || !spans) return super.update(name, mutate, options);
    const t = performance.now();
    return super.update(name, mutate, options).finally(() => spans.add('storeWrite', performance.now() - t));
  }
}

/** StoreSlotClaims with the time of each claim recorded as `claim`. */
class TimedSlotClaims extends StoreSlotClaims {
  constructor(
    o: ConstructorParameters<typeof StoreSlotClaims>[0],
    private readonly spans: Spans | undefined,
  ) {
    super(o);
  }

  override async claim(slots: readonly SlotRef[], holder: SlotHolder) {
    const t = performance.now();
    try {
      return await super.claim(slots, holder);
    } finally {
      this.spans?.add('claim', performance.now() - t);
    }
  }
}

// ------------------------------------------------------------------------------------------- nodes

/** One node as the agent wires it in a cluster, with its own kubelet. */
export interface ClaimNode {
  name: string;
  kubelet: BenchKubelet;
  registry: DeviceRegistry;
  store: KubeDeviceStore;
  manager: DevicePluginManager;
  /** Resolves once no write is pending here and this node's view of `device` records no slot claim. */
  clear(device: string, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Node `name` offering `devices` (put in its DeviceRegistry, as discovery would). Its store starts with the
 * server's Devices; `putOnServer` writes the devices there through it.
 */
export async function startNode(
  api: KubeApiServer,
  name: string,
  devices: DeviceObject[],
  spans?: Spans,
): Promise<ClaimNode> {
  const dir = tempDir(`lb-bench-dp-${name}-`);
  const logger = silentLogger();
  const kubelet = new BenchKubelet(dir.path);
  const registry = new DeviceRegistry();
  for (const d of devices) registry.put(d);
  const store = new TimedKubeDeviceStore(
    { kubeConfig: kubeConfigFor(api), namespace: NS, logger, ...STORE_OPTIONS },
    spans,
  );
  const claims = new TimedSlotClaims({ store, logger }, spans);
  const manager = new DevicePluginManager({ registry, node: name, dir: dir.path, logger, claims });
  const stop = async () => {
    await manager.stop();
    claims.stop();
    await store.close();
    await kubelet.stop();
    dir.remove();
  };
  try {
    await kubelet.start();
    await store.start();
    await claims.start();
    await manager.start();
  } catch (err) {
    await stop();
    throw err;
  }
  const clear = (device: string, timeoutMs: number) =>
    waitFor(
      async () =>
        store.pending === 0 && Object.keys((await store.get(device))?.status.slots ?? {}).length === 0,
      timeoutMs,
      `${name}: no pending write and no claim on ${device}`,
    );
  return { name, kubelet, registry, store, manager, clear, stop };
}

/** Writes `devices` to the server through `via`'s store; resolves once every node's store has them online. */
export async function putOnServer(
  api: KubeApiServer,
  via: ClaimNode,
  nodes: ClaimNode[],
  devices: DeviceObject[],
  timeoutMs: number,
): Promise<void> {
  await Promise.all(devices.map((d) => via.store.upsert(d)));
  for (const d of devices) {
    const name = d.metadata.name;
    await waitFor(
      () => (api.object('devices', NS, name)?.status as { online?: boolean } | undefined)?.online === true,
      timeoutMs,
      `Device ${name} online on the server`,
    );
    for (const n of nodes) {
      await waitFor(
        async () => {
          const o = await n.store.get(name);
          return n.store.pending === 0 && o?.metadata.resourceVersion !== '' && o?.status.online === true;
        },
        timeoutMs,
        `${n.name}: Device ${name} in its store`,
      );
    }
  }
}
