// A minimal kubelet device manager for the device-plugin bench: serves Registration on <dir>/kubelet.sock,
// dials each registering plugin back, keeps its ListAndWatch stream (every message stamped with
// performance.now() at receipt) and calls Allocate as the kubelet does. Built on src/deviceplugin/api.ts only.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import {
  type AllocateResponse,
  type Device,
  DevicePluginApi,
  devicePluginProto,
  type Empty,
  type ListAndWatchResponse,
  type RegisterRequest,
  serverStream,
  unaryCall,
  unixAddress,
} from '../../src/deviceplugin/api.js';

export interface StreamUpdate {
  at: number;
  devices: Device[];
}

interface Plugin {
  client: grpc.Client;
  stream: grpc.ClientReadableStream<ListAndWatchResponse>;
  updates: StreamUpdate[];
  connected: boolean;
}

export class BenchKubelet {
  private readonly plugins = new Map<string, Plugin>();
  private readonly waiters = new Set<() => void>();
  private server: grpc.Server | undefined;

  constructor(readonly dir: string) {}

  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(devicePluginProto().Registration, { Register: this.register });
    const socket = join(this.dir, DevicePluginApi.kubeletSocket);
    rmSync(socket, { force: true });
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(unixAddress(socket), grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const p of this.plugins.values()) {
      p.stream.cancel();
      p.client.close();
    }
    this.plugins.clear();
    this.server?.forceShutdown();
    this.server = undefined;
    rmSync(join(this.dir, DevicePluginApi.kubeletSocket), { force: true });
  }

  /** Resolves once every resource has a connected stream with at least one message. */
  streaming(resources: string[], ms = 5000): Promise<void> {
    return this.waitFor(
      () => resources.every((r) => (this.plugins.get(r)?.updates.length ?? 0) > 0),
      ms,
      `streams of ${resources.join(', ')}`,
    ).then(() => undefined);
  }

  /** The first message of a resource received at or after `since` that matches; its receipt time. */
  async update(
    resource: string,
    match: (devices: Device[]) => boolean,
    since: number,
    ms: number,
  ): Promise<number | undefined> {
    const find = () => this.plugins.get(resource)?.updates.find((u) => u.at >= since && match(u.devices));
    try {
      await this.waitFor(() => find() !== undefined, ms, `an update of ${resource}`);
    } catch {
      return undefined;
    }
    return find()?.at;
  }

  /** Drop the messages kept so far (a long run would otherwise keep them all). */
  trim(): void {
    for (const p of this.plugins.values()) p.updates.splice(0, Math.max(0, p.updates.length - 1));
  }

  allocate(resource: string, containers: string[][], timeoutMs = 10_000): Promise<AllocateResponse> {
    const plugin = this.plugins.get(resource);
    if (!plugin?.connected) return Promise.reject(new Error(`no device plugin for ${resource}`));
    const request = { container_requests: containers.map((ids) => ({ devices_ids: ids })) };
    return unaryCall(plugin.client, devicePluginProto().DevicePlugin.Allocate, request, timeoutMs);
  }

  private waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const probe = () => {
        if (!check()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(probe);
      };
      this.waiters.add(probe);
      probe();
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private readonly register: grpc.handleUnaryCall<RegisterRequest, Empty> = (call, callback) => {
    const r = call.request;
    const client = new grpc.Client(
      unixAddress(join(this.dir, r.endpoint)),
      grpc.credentials.createInsecure(),
    );
    unaryCall(client, devicePluginProto().DevicePlugin.GetDevicePluginOptions, {}, 5000).then(
      () => {
        const old = this.plugins.get(r.resource_name);
        old?.stream.cancel();
        old?.client.close();
        const stream = serverStream(client, devicePluginProto().DevicePlugin.ListAndWatch, {});
        const plugin: Plugin = { client, stream, updates: [], connected: true };
        this.plugins.set(r.resource_name, plugin);
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
        callback(null, {});
      },
      (err: unknown) => {
        client.close();
        callback({ code: grpc.status.UNKNOWN, details: err instanceof Error ? err.message : String(err) });
      },
    );
  };
}
