import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import {
  type AllocateResponse,
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

const CHECKPOINT = 'kubelet_internal_checkpoint';
const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * A kubelet device manager as far as plugins can tell: it serves Registration on `<dir>/kubelet.sock`; on
 * Register it checks the version and the resource name, dials the plugin's endpoint in the same directory,
 * asks for its options and keeps a ListAndWatch stream open; a second registration of a resource replaces
 * the first. `restart()` does what a kubelet restart does to the directory: kubelet.sock goes away, every
 * plugin socket is deleted, and a new kubelet.sock appears.
 */
export class TestKubelet {
  /** Every Register request received, accepted or not, oldest first. */
  readonly registrations: RegisterRequest[] = [];
  private readonly endpoints = new Map<string, PluginEndpoint>();
  private readonly waiters = new Set<() => void>();
  private server: grpc.Server | undefined;

  constructor(readonly dir: string) {}

  get socketPath(): string {
    return join(this.dir, DevicePluginApi.kubeletSocket);
  }

  /** Start as the kubelet's device manager does: delete every socket in the directory, then serve kubelet.sock. */
  async start(): Promise<void> {
    this.removeSockets();
    const server = new grpc.Server();
    server.addService(devicePluginProto().Registration, { Register: this.register });
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(unixAddress(this.socketPath), grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    this.server = server;
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
    this.disconnectAll();
    this.server?.forceShutdown();
    this.server = undefined;
    rmSync(this.socketPath, { force: true });
    await new Promise((r) => setTimeout(r, options.downMs ?? 50));
    await this.start();
  }

  async stop(): Promise<void> {
    this.disconnectAll();
    this.server?.forceShutdown();
    this.server = undefined;
    rmSync(this.socketPath, { force: true });
  }

  private readonly register: grpc.handleUnaryCall<RegisterRequest, Empty> = (call, callback) => {
    const request = call.request;
    this.registrations.push(request);
    this.notify();
    this.accept(request).then(
      () => callback(null, {}),
      (err: unknown) =>
        callback({ code: grpc.status.UNKNOWN, details: err instanceof Error ? err.message : String(err) }),
    );
  };

  private async accept(r: RegisterRequest): Promise<void> {
    if (!(DevicePluginApi.supportedVersions as readonly string[]).includes(r.version)) {
      throw new Error(
        `requested device plugin version ${r.version} is not supported (${DevicePluginApi.version})`,
      );
    }
    if (!isExtendedResourceName(r.resource_name))
      throw new Error(`invalid extended resource name ${r.resource_name}`);
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
    const healthy = new Set(
      this.devices(resourceName)
        .filter((d) => d.health === DevicePluginApi.healthy)
        .map((d) => d.ID),
    );
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
