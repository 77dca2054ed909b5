import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import {
  type AllocateResponse,
  type ContainerAllocateResponse,
  type Device,
  DevicePluginApi,
  type DevicePluginOptions,
  devicePluginProto,
  type Empty,
  type ListAndWatchResponse,
  type PreferredAllocationResponse,
  type RegisterRequest,
  serverStream,
  unaryCall,
  unixAddress,
} from '../../src/deviceplugin/api.js';
import {
  type AllocatableResourcesResponse,
  type GetPodResourcesRequest,
  type GetPodResourcesResponse,
  type ListPodResourcesResponse,
  type PodResources,
  podResourcesProto,
} from '../../src/deviceplugin/podResources.js';
import { RequestGate } from './requestGate.js';

/** One ListAndWatch message as the kubelet received it; `at` is `performance.now()` at receipt. */
export interface DeviceUpdate {
  at: number;
  devices: Device[];
}

/** What the kubelet knows of one registered resource. */
export interface PluginEndpoint {
  resourceName: string;
  endpoint: string;
  options: DevicePluginOptions;
  registeredAt: number;
  /** Every ListAndWatch message, oldest first. */
  updates: DeviceUpdate[];
  /** False once the stream ended or failed (the kubelet then treats the devices as unhealthy). */
  connected: boolean;
  client: grpc.Client;
  stream: grpc.ClientReadableStream<ListAndWatchResponse>;
}

/** A container as admitPod takes it: its name and, per resource, how many it asks for (limits = requests). */
export interface ContainerSpec {
  name: string;
  resources: Record<string, number>;
}

export interface PodSpec {
  /** Default `default`. */
  namespace?: string;
  name: string;
  initContainers?: ContainerSpec[];
  containers: ContainerSpec[];
}

/** One Allocate call of an admission: one container, one resource. */
export interface AdmissionAllocation {
  container: string;
  resource: string;
  deviceIds: string[];
  response: ContainerAllocateResponse;
}

/** What the device manager assigned to an admitted pod. */
export interface AdmittedPod {
  namespace: string;
  name: string;
  /** Init containers first, then app containers; each with its device IDs by resource. */
  containers: { name: string; init: boolean; devices: Record<string, string[]> }[];
  /** Every Allocate call, in the order made, with the plugin's answer. */
  allocations: AdmissionAllocation[];
}

/** A pod the kubelet refused at admission (the kubelet's UnexpectedAdmissionError). */
export class AdmissionError extends Error {
  readonly reason = 'UnexpectedAdmissionError';
  constructor(
    readonly pod: string,
    cause: unknown,
  ) {
    super(`Allocate failed due to ${cause instanceof Error ? cause.message : cause}, which is unexpected`, {
      cause,
    });
    this.name = 'AdmissionError';
  }
}

export interface TestKubeletOptions {
  /** Also serve the PodResources API (v1 PodResourcesLister) on this socket, as the kubelet does. */
  podResourcesSocket?: string;
}

const CHECKPOINT = 'kubelet_internal_checkpoint';
const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * A kubelet device manager as far as plugins can tell: it serves Registration on `<dir>/kubelet.sock`; on
 * Register it checks the version, the resource name and that the endpoint is a file name (no path), dials
 * the plugin's endpoint in the same directory, asks for its options and keeps a ListAndWatch stream open; a
 * second registration of a resource replaces the first. `restart()` does what a kubelet restart does to the directory: kubelet.sock goes away, every
 * plugin socket is deleted, and a new kubelet.sock appears.
 *
 * With `podResourcesSocket` it also admits pods as the kubelet's device manager does (`admitPod`, `deletePod`)
 * and serves what it assigned through the PodResources API. Assignments survive `restart()`, as the kubelet's
 * checkpoint keeps them.
 */
export class TestKubelet {
  /** Every Register request received, accepted or not, oldest first. */
  readonly registrations: RegisterRequest[] = [];
  private readonly endpoints = new Map<string, PluginEndpoint>();
  private readonly waiters = new Set<() => void>();
  private readonly pods = new Map<string, AdmittedPod>();
  private readonly registerGates: RequestGate<RegisterRequest>[] = [];
  private admissions: Promise<unknown> = Promise.resolve();
  private server: grpc.Server | undefined;
  private podResourcesServer: grpc.Server | undefined;

  constructor(
    readonly dir: string,
    private readonly options: TestKubeletOptions = {},
  ) {}

  get socketPath(): string {
    return join(this.dir, DevicePluginApi.kubeletSocket);
  }

  /** Start as the kubelet's device manager does: delete every socket in the directory, then serve kubelet.sock. */
  async start(): Promise<void> {
    this.removeSockets();
    const server = new grpc.Server();
    server.addService(devicePluginProto().Registration, { Register: this.register });
    await bind(server, this.socketPath);
    this.server = server;
    await this.servePodResources();
  }

  get podResourcesSocket(): string | undefined {
    return this.options.podResourcesSocket;
  }

  plugin(resourceName: string): PluginEndpoint | undefined {
    return this.endpoints.get(resourceName);
  }

  /** The latest device list of a resource ([] before its first message). */
  devices(resourceName: string): Device[] {
    return this.endpoints.get(resourceName)?.updates.at(-1)?.devices ?? [];
  }

  /** Resolves once `check` returns a value; re-checked on every registration and stream event. */
  waitFor<T>(check: () => T | undefined, ms = 5000, what = 'kubelet state'): Promise<T> {
    return new Promise((resolve, reject) => {
      const probe = () => {
        const value = check();
        if (value === undefined) return;
        finish();
        resolve(value);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`test kubelet: timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(probe);
      };
      this.waiters.add(probe);
      probe();
    });
  }

  /** The first update of a resource received after `since` (a `performance.now()` value) that matches. */
  waitForUpdate(
    resourceName: string,
    match: (devices: Device[]) => boolean,
    options: { since?: number; ms?: number } = {},
  ): Promise<DeviceUpdate> {
    const since = options.since ?? Number.NEGATIVE_INFINITY;
    return this.waitFor(
      () => this.endpoints.get(resourceName)?.updates.find((u) => u.at >= since && match(u.devices)),
      options.ms,
      `a ListAndWatch update of ${resourceName}`,
    );
  }

  /**
   * Allocate as the kubelet does at container creation: one ContainerAllocateRequest per container (a flat
   * list is one container). Like the kubelet it only hands out devices the plugin listed as Healthy, unless
   * `check` is false (to see what the plugin itself says).
   */
  async allocate(
    resourceName: string,
    deviceIds: string[] | string[][],
    options: { check?: boolean } = {},
  ): Promise<AllocateResponse> {
    const plugin = this.connected(resourceName);
    const containers = deviceIds.every((d) => Array.isArray(d))
      ? (deviceIds as string[][])
      : [deviceIds as string[]];
    if (options.check ?? true) this.checkHealthy(resourceName, containers.flat());
    const request = { container_requests: containers.map((ids) => ({ devices_ids: ids })) };
    const response = await unaryCall(
      plugin.client,
      devicePluginProto().DevicePlugin.Allocate,
      request,
      10_000,
    );
    if (response.container_responses.length === 0)
      throw new Error('no containers return in allocation response');
    return response;
  }

  /** GetPreferredAllocation for one container, if the plugin said it offers it. */
  async preferred(
    resourceName: string,
    available: string[],
    mustInclude: string[],
    size: number,
  ): Promise<PreferredAllocationResponse> {
    const plugin = this.connected(resourceName);
    if (!plugin.options.get_preferred_allocation_available)
      throw new Error(`${resourceName}: no preferred allocation`);
    const request = {
      container_requests: [
        { available_deviceIDs: available, must_include_deviceIDs: mustInclude, allocation_size: size },
      ],
    };
    return unaryCall(plugin.client, devicePluginProto().DevicePlugin.GetPreferredAllocation, request, 10_000);
  }

  async preStart(resourceName: string, deviceIds: string[]): Promise<void> {
    const plugin = this.connected(resourceName);
    const { PreStartContainer } = devicePluginProto().DevicePlugin;
    await unaryCall(plugin.client, PreStartContainer, { devices_ids: deviceIds }, 30_000);
  }

  /**
   * A kubelet restart: the old process goes (its streams end, kubelet.sock disappears), and after `downMs`
   * the new one starts, deleting every plugin socket and serving a new kubelet.sock.
   */
  async restart(options: { downMs?: number } = {}): Promise<void> {
    this.shutdown();
    await new Promise((r) => setTimeout(r, options.downMs ?? 50));
    await this.start();
  }

  async stop(): Promise<void> {
    this.shutdown();
  }

  /**
   * End the ListAndWatch stream of a resource (of every resource when none is named), kubelet.sock staying as it
   * is: what a plugin sees when the kubelet stops its endpoint without restarting (kubernetes#121994). Like the
   * kubelet, it does not dial the plugin again by itself: the resource stays disconnected (its devices
   * unusable) until the plugin registers again.
   */
  dropStreams(resourceName?: string): void {
    const names = resourceName === undefined ? [...this.endpoints.keys()] : [resourceName];
    for (const name of names) this.disconnect(name);
    this.notify();
  }

  /**
   * Parks every later Register request that `admits`, after recording it in `registrations` and before
   * answering it, until the returned gate releases it: a kubelet slow to take a plugin's registration.
   */
  holdRegistrations(admits: (r: RegisterRequest) => boolean): RequestGate<RegisterRequest> {
    const gate = new RequestGate(admits);
    this.registerGates.push(gate);
    return gate;
  }

  /** The pods admitted and not deleted, as copies. */
  admittedPods(): AdmittedPod[] {
    return structuredClone([...this.pods.values()]);
  }

  /**
   * Admit a pod as the kubelet's device manager does, one admission at a time. For each container, init
   * containers first, and each extended resource it asks for: take devices the init containers of the pod
   * left for reuse, then devices the plugin last listed Healthy that no pod holds (the plugin's preferred
   * ones first, if it offers a preference), and call Allocate with them (one container, one resource per
   * call). An init container's devices are reusable by the app containers after it; an app container's are
   * its own. Not enough devices, or a failed Allocate, refuses the pod (`AdmissionError`) and assigns nothing.
   */
  admitPod(spec: PodSpec): Promise<AdmittedPod> {
    const admission = this.admissions.then(() => this.admit(spec));
    this.admissions = admission.catch(() => undefined);
    return admission;
  }

  /** The pod is gone: its devices are free again and PodResources no longer lists it. */
  deletePod(namespace: string, name: string): boolean {
    const deleted = this.pods.delete(podKey(namespace, name));
    this.notify();
    return deleted;
  }

  private async admit(spec: PodSpec): Promise<AdmittedPod> {
    const pod: AdmittedPod = {
      namespace: spec.namespace ?? 'default',
      name: spec.name,
      containers: [],
      allocations: [],
    };
    const key = podKey(pod.namespace, pod.name);
    if (this.pods.has(key)) throw new Error(`test kubelet: pod ${key} is already admitted`);
    const inUse = this.devicesInUse();
    const reusable = new Map<string, Set<string>>();
    try {
      for (const c of spec.initContainers ?? []) {
        const devices = await this.admitContainer(pod, c, true, inUse, reusable);
        for (const [resource, ids] of Object.entries(devices))
          for (const id of ids) setOf(reusable, resource).add(id);
      }
      for (const c of spec.containers) {
        const devices = await this.admitContainer(pod, c, false, inUse, reusable);
        for (const [resource, ids] of Object.entries(devices))
          for (const id of ids) setOf(reusable, resource).delete(id);
      }
    } catch (err) {
      throw new AdmissionError(key, err);
    }
    this.pods.set(key, pod);
    this.notify();
    return structuredClone(pod);
  }

  private async admitContainer(
    pod: AdmittedPod,
    container: ContainerSpec,
    init: boolean,
    inUse: Map<string, Set<string>>,
    reusable: Map<string, Set<string>>,
  ): Promise<Record<string, string[]>> {
    const devices: Record<string, string[]> = {};
    for (const [resource, count] of Object.entries(container.resources)) {
      if (!isExtendedResourceName(resource) || count <= 0) continue;
      if (!Number.isInteger(count)) throw new Error(`${resource}: ${count} is not a whole number of devices`);
      const ids = await this.devicesToAllocate(
        resource,
        count,
        setOf(inUse, resource),
        reusable.get(resource),
      );
      const { Allocate } = devicePluginProto().DevicePlugin;
      const request = { container_requests: [{ devices_ids: ids }] };
      const response = await unaryCall(this.connected(resource).client, Allocate, request, 10_000);
      const first = response.container_responses[0];
      if (!first) throw new Error('no containers return in allocation response');
      devices[resource] = ids;
      pod.allocations.push({ container: container.name, resource, deviceIds: ids, response: first });
    }
    pod.containers.push({ name: container.name, init, devices });
    return devices;
  }

  /** The kubelet's devicesToAllocate: reusable devices first, then free healthy ones. Marks them in use. */
  private async devicesToAllocate(
    resource: string,
    count: number,
    inUse: Set<string>,
    reusable: ReadonlySet<string> | undefined,
  ): Promise<string[]> {
    const plugin = this.endpoints.get(resource);
    if (!plugin) {
      throw new Error(
        `Node didn't have enough resource: ${resource}, requested: ${count}, used: 0, capacity: 0`,
      );
    }
    const allocated: string[] = [];
    const take = (ids: Iterable<string>): boolean => {
      for (const id of ids) {
        if (allocated.length === count) break;
        if (allocated.includes(id)) continue;
        allocated.push(id);
        inUse.add(id);
      }
      return allocated.length === count;
    };
    if (take(reusable ?? [])) return allocated;
    const healthy = plugin.connected ? this.healthyIds(resource) : [];
    const available = healthy.filter((id) => !inUse.has(id));
    const needed = count - allocated.length;
    if (available.length < needed) {
      throw new Error(
        `requested number of devices unavailable for ${resource}. Requested: ${needed}, Available: ${available.length}`,
      );
    }
    if (plugin.options.get_preferred_allocation_available) {
      const preferred = await this.preferred(resource, [...allocated, ...available], allocated, count);
      const ids = preferred.container_responses[0]?.deviceIDs ?? [];
      if (take(ids.filter((id) => available.includes(id)))) return allocated;
    }
    take(available);
    return allocated;
  }

  /** Devices held by admitted pods (init containers included), by resource. */
  private devicesInUse(): Map<string, Set<string>> {
    const inUse = new Map<string, Set<string>>();
    for (const pod of this.pods.values())
      for (const c of pod.containers)
        for (const [resource, ids] of Object.entries(c.devices))
          for (const id of ids) setOf(inUse, resource).add(id);
    return inUse;
  }

  private healthyIds(resourceName: string): string[] {
    return this.devices(resourceName)
      .filter((d) => d.health === DevicePluginApi.healthy)
      .map((d) => d.ID);
  }

  // ------------------------------------------------------------------------------------- PodResources

  private async servePodResources(): Promise<void> {
    const socket = this.options.podResourcesSocket;
    if (!socket) return;
    mkdirSync(dirname(socket), { recursive: true });
    rmSync(socket, { force: true });
    const server = new grpc.Server();
    server.addService(podResourcesProto().PodResourcesLister, {
      List: this.listPods,
      GetAllocatableResources: this.allocatable,
      Get: this.getPod,
    });
    await bind(server, socket);
    this.podResourcesServer = server;
  }

  /** Like the kubelet's List: app containers (regular init containers are not listed) with their devices. */
  private readonly listPods: grpc.handleUnaryCall<unknown, ListPodResourcesResponse> = (_call, callback) => {
    callback(null, { pod_resources: [...this.pods.values()].map(toPodResources) });
  };

  private readonly getPod: grpc.handleUnaryCall<GetPodResourcesRequest, GetPodResourcesResponse> = (
    call,
    callback,
  ) => {
    const { pod_name: name, pod_namespace: namespace } = call.request;
    const pod = this.pods.get(podKey(namespace, name));
    if (!pod) {
      callback({ code: grpc.status.NOT_FOUND, details: `pod ${name} in namespace ${namespace} not found` });
      return;
    }
    callback(null, { pod_resources: toPodResources(pod) });
  };

  private readonly allocatable: grpc.handleUnaryCall<unknown, AllocatableResourcesResponse> = (
    _call,
    callback,
  ) => {
    const devices = [...this.endpoints.values()]
      .filter((p) => p.connected)
      .map((p) => ({ resource_name: p.resourceName, device_ids: this.healthyIds(p.resourceName) }));
    callback(null, { devices });
  };

  /** The old process goes: streams end, both sockets disappear. Admitted pods stay (the checkpoint). */
  private shutdown(): void {
    this.disconnectAll();
    this.server?.forceShutdown();
    this.server = undefined;
    rmSync(this.socketPath, { force: true });
    this.podResourcesServer?.forceShutdown();
    this.podResourcesServer = undefined;
    if (this.options.podResourcesSocket) rmSync(this.options.podResourcesSocket, { force: true });
  }

  private readonly register: grpc.handleUnaryCall<RegisterRequest, Empty> = (call, callback) => {
    const request = call.request;
    this.registrations.push(request);
    this.notify();
    this.parkRegistration(request)
      .then(() => this.accept(request))
      .then(
        () => callback(null, {}),
        (err: unknown) =>
          callback({ code: grpc.status.UNKNOWN, details: err instanceof Error ? err.message : String(err) }),
      );
  };

  private async parkRegistration(r: RegisterRequest): Promise<void> {
    for (const g of this.registerGates) if (g.admits(r)) await g.park();
  }

  private async accept(r: RegisterRequest): Promise<void> {
    if (!(DevicePluginApi.supportedVersions as readonly string[]).includes(r.version)) {
      throw new Error(
        `requested device plugin version ${r.version} is not supported (${DevicePluginApi.version})`,
      );
    }
    if (!isExtendedResourceName(r.resource_name))
      throw new Error(`invalid extended resource name ${r.resource_name}`);
    if (!isPlainFileName(r.endpoint))
      throw new Error(`invalid endpoint ${JSON.stringify(r.endpoint)}: not a file name in ${this.dir}`);
    const client = new grpc.Client(
      unixAddress(join(this.dir, r.endpoint)),
      grpc.credentials.createInsecure(),
    );
    let options: DevicePluginOptions;
    try {
      options = await unaryCall(client, devicePluginProto().DevicePlugin.GetDevicePluginOptions, {}, 5000);
    } catch (err) {
      client.close();
      throw new Error(
        `failed to dial device plugin ${r.endpoint}: ${err instanceof Error ? err.message : err}`,
      );
    }
    this.disconnect(r.resource_name);
    const stream = serverStream(client, devicePluginProto().DevicePlugin.ListAndWatch, {});
    const plugin: PluginEndpoint = {
      resourceName: r.resource_name,
      endpoint: r.endpoint,
      options,
      registeredAt: performance.now(),
      updates: [],
      connected: true,
      client,
      stream,
    };
    this.endpoints.set(r.resource_name, plugin);
    stream.on('data', (m: ListAndWatchResponse) => {
      plugin.updates.push({ at: performance.now(), devices: m.devices });
      this.notify();
    });
    const ended = () => {
      plugin.connected = false;
      this.notify();
    };
    stream.on('error', ended);
    stream.on('end', ended);
    this.notify();
  }

  /** The kubelet's removeContents: sockets go, the checkpoint file and directories stay. */
  private removeSockets(): void {
    for (const name of readdirSync(this.dir)) {
      const path = join(this.dir, name);
      if (name !== CHECKPOINT && lstatSync(path).isSocket()) rmSync(path, { force: true });
    }
  }

  private connected(resourceName: string): PluginEndpoint {
    const plugin = this.endpoints.get(resourceName);
    if (!plugin?.connected) throw new Error(`test kubelet: no connected device plugin for ${resourceName}`);
    return plugin;
  }

  private checkHealthy(resourceName: string, ids: string[]): void {
    const healthy = new Set(this.healthyIds(resourceName));
    const bad = ids.filter((id) => !healthy.has(id));
    if (bad.length > 0)
      throw new Error(`test kubelet: devices not healthy or unknown for ${resourceName}: ${bad}`);
  }

  private disconnect(resourceName: string): void {
    const plugin = this.endpoints.get(resourceName);
    if (!plugin) return;
    plugin.stream.cancel();
    plugin.client.close();
    plugin.connected = false;
  }

  private disconnectAll(): void {
    for (const name of this.endpoints.keys()) this.disconnect(name);
    this.endpoints.clear();
    this.notify();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function bind(server: grpc.Server, socketPath: string): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(unixAddress(socketPath), grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
}

const podKey = (namespace: string, name: string) => `${namespace}/${name}`;

function setOf(map: Map<string, Set<string>>, key: string): Set<string> {
  const set = map.get(key) ?? new Set<string>();
  map.set(key, set);
  return set;
}

function toPodResources(pod: AdmittedPod): PodResources {
  return {
    namespace: pod.namespace,
    name: pod.name,
    containers: pod.containers
      .filter((c) => !c.init)
      .map((c) => ({
        name: c.name,
        devices: Object.entries(c.devices).map(([resource_name, device_ids]) => ({
          resource_name,
          device_ids,
        })),
      })),
  };
}

/**
 * The endpoint is, as the API documents it, the name of the plugin's socket in the kubelet's device-plugin
 * directory (`PATH = path.Join(DevicePluginPath, endpoint)`). The kubelet joins and dials whatever it gets: an
 * absolute path or one with `..` fails to dial or leaves the directory. This kubelet holds plugins to the
 * documented contract and refuses anything but a plain file name.
 */
function isPlainFileName(endpoint: string): boolean {
  return endpoint !== '' && endpoint !== '.' && endpoint !== '..' && !/[/\0]/.test(endpoint);
}

/** Like the kubelet's check: `domain/name`, outside the kubernetes.io namespaces, a qualified name. */
export function isExtendedResourceName(name: string): boolean {
  const slash = name.indexOf('/');
  if (slash < 0 || name.includes('kubernetes.io/') || name.startsWith('requests.')) return false;
  const domain = name.slice(0, slash);
  const local = name.slice(slash + 1);
  return (
    domain.length <= 253 && DNS_SUBDOMAIN.test(domain) && local.length <= 63 && QUALIFIED_NAME.test(local)
  );
}
