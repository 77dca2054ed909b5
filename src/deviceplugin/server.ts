import { type FSWatcher, watch } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { backoffDelay, type Clock } from '../util/clock.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { child, type Logger } from '../util/logger.js';
import {
  DevicePluginApi,
  type DevicePluginOptions,
  devicePluginProto,
  unaryCall,
  unixAddress,
} from './api.js';
import { socketFileName } from './convert.js';
import { SocketPathError } from './errors.js';
import { type DevicePluginCallbacks, DevicePluginService } from './service.js';

export interface DevicePluginServerOptions extends DevicePluginCallbacks {
  /** The kubelet's device-plugin directory, where kubelet.sock is and our socket goes. */
  dir: string;
  /** The extended resource, e.g. `leafbridge.io/front-door-1a2b3c`. */
  resourceName: string;
  logger: Logger;
  clock: Clock;
  /** Deadline of a Register call. Default 5 s. */
  registerTimeoutMs?: number;
  /** A safety net under the directory watch: how often to look at the sockets anyway. Default 5 s. */
  pollIntervalMs?: number;
}

export interface DevicePluginStatus {
  resourceName: string;
  socketPath: string;
  listening: boolean;
  registered: boolean;
  /** Successful registrations since start: 1, then one more per kubelet restart. */
  registrations: number;
  streams: number;
}

/** Unix socket paths are limited to 108 bytes on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH = 107;
/** A ListAndWatch stream open this long before the kubelet ended it resets the re-registration backoff. */
const STABLE_STREAM_MS = 30_000;

const pluginOptions: DevicePluginOptions = {
  pre_start_required: false,
  get_preferred_allocation_available: true,
};

/**
 * The device plugin of one resource: serves the v1beta1 DevicePlugin service on its own socket in the plugin
 * directory and registers it with the kubelet. It watches the directory: a recreated kubelet.sock (the kubelet
 * restarted) means register again, and a deleted socket of ours (the kubelet cleans the directory when it
 * starts) means listen again first. The kubelet ending the ListAndWatch stream of our registration, kubelet.sock
 * unchanged (kubernetes#121994), means register again too: at once, then with a jittered backoff (from 200 ms,
 * ceiling doubling up to 30 s) while the kubelet keeps ending the new streams within 30 s. Health reaches the kubelet through
 * `update()`.
 */
export class DevicePluginServer {
  readonly socketPath: string;
  private readonly kubeletSocket: string;
  private readonly service: DevicePluginService;
  private readonly logger: Logger;
  private server: grpc.Server | undefined;
  /** Identity (inode and birth time) of the socket we listen on, and of the kubelet.sock we registered with. */
  private listeningOn: string | undefined;
  private registeredWith: string | undefined;
  private registrations = 0;
  private failures = 0;
  /** Streams the kubelet ended one after another (see STABLE_STREAM_MS), and when to register again for them. */
  private drops = 0;
  private reregisterAt: number | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(private readonly o: DevicePluginServerOptions) {
    this.socketPath = join(o.dir, socketFileName(o.resourceName));
    this.kubeletSocket = join(o.dir, DevicePluginApi.kubeletSocket);
    this.logger = child(o.logger, 'deviceplugin').child({ resource: o.resourceName });
    this.service = new DevicePluginService({
      resourceName: o.resourceName,
      options: pluginOptions,
      callbacks: o,
      logger: this.logger,
      clock: o.clock,
      onDropped: (openMs) => this.dropped(openMs),
    });
  }

  /**
   * Listen on our socket (replacing a stale one), register if the kubelet is there, and watch the directory.
   * Rejects with a `SocketPathError` when the directory is too long for a unix socket in it.
   */
  async start(): Promise<void> {
    if (Buffer.byteLength(this.socketPath) > MAX_SOCKET_PATH)
      throw new SocketPathError(this.o.dir, this.socketPath, MAX_SOCKET_PATH);
    this.stopped = false;
    await this.listen();
    this.watcher = watch(this.o.dir, (_event, file) => {
      if (
        file === null ||
        file === DevicePluginApi.kubeletSocket ||
        file === socketFileName(this.o.resourceName)
      )
        this.reconcile();
    });
    this.watcher.on('error', (err) =>
      this.logger.warn({ err: err.message }, 'watching the plugin directory failed'),
    );
    this.reconcile();
    await this.running;
  }

  /** Send the current device list to the kubelet, if it changed. */
  update(): void {
    this.service.publish();
  }

  status(): DevicePluginStatus {
    return {
      resourceName: this.o.resourceName,
      socketPath: this.socketPath,
      listening: this.server !== undefined,
      registered: this.registeredWith !== undefined && this.reregisterAt === undefined,
      registrations: this.registrations,
      streams: this.service.streamCount,
    };
  }

  /** Stop serving and remove our socket. The kubelet sees the stream end and marks the devices unhealthy. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    await this.running;
    await this.closeServer();
    await rm(this.socketPath, { force: true });
    this.registeredWith = undefined;
  }

  /** Look at both sockets, one pass at a time; a request during a pass runs one more pass after it. */
  private reconcile(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reconcileOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
  }

  private async reconcileOnce(): Promise<void> {
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = undefined;
    try {
      if ((await identity(this.socketPath)) !== this.listeningOn) {
        this.logger.warn({ socket: this.socketPath }, 'our socket was removed; listening again');
        await this.listen();
      }
      const kubelet = await identity(this.kubeletSocket);
      if (kubelet === undefined) {
        if (this.registeredWith) this.logger.warn('kubelet.sock is gone; waiting for the kubelet');
        this.registeredWith = undefined;
        this.reregisterAt = undefined; // the next kubelet.sock is a new one: registered with anyway
      } else if (kubelet !== this.registeredWith || this.reregisterDue()) {
        const due = this.reregisterAt;
        await this.register();
        this.registeredWith = kubelet;
        this.failures = 0;
        if (this.reregisterAt === due) this.reregisterAt = undefined; // else a stream ended meanwhile
      }
      this.schedule(this.nextPassMs());
    } catch (err) {
      const delay = backoffDelay(this.failures++, 200, 30_000);
      this.logger.error({ err: errorMessage(err), retryInMs: delay }, 'device plugin not registered');
      this.schedule(delay);
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) this.o.clock.clearTimeout(this.timer);
    this.timer = this.o.clock.setTimeout(() => this.reconcile(), ms);
    this.timer.unref?.();
  }

  /** The kubelet ended the stream of our registration: register again, at once or after a backoff. */
  private dropped(openMs: number): void {
    if (this.stopped) return;
    if (openMs >= STABLE_STREAM_MS) this.drops = 0;
    const delay = this.drops === 0 ? 0 : backoffDelay(this.drops - 1, 200, 30_000);
    this.drops++;
    this.reregisterAt = this.o.clock.now() + delay;
    this.logger.warn({ openMs, retryInMs: delay }, 'the kubelet ended ListAndWatch; registering again');
    if (delay === 0) this.reconcile();
    else this.schedule(delay);
  }

  private reregisterDue(): boolean {
    return this.reregisterAt !== undefined && this.o.clock.now() >= this.reregisterAt;
  }

  /** The next look: the poll interval, or sooner when a re-registration is waiting for its time. */
  private nextPassMs(): number {
    const poll = this.o.pollIntervalMs ?? 5000;
    if (this.reregisterAt === undefined) return poll;
    return Math.min(poll, Math.max(0, this.reregisterAt - this.o.clock.now()));
  }

  /** A fresh server on our socket path. The old server goes first: closing its listener unlinks the path. */
  private async listen(): Promise<void> {
    await this.closeServer();
    await rm(this.socketPath, { force: true });
    const server = new grpc.Server();
    server.addService(devicePluginProto().DevicePlugin, this.service.implementation());
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(unixAddress(this.socketPath), grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
    this.server = server;
    this.listeningOn = await identity(this.socketPath);
    this.logger.info({ socket: this.socketPath }, 'device plugin listening');
  }

  private async closeServer(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.listeningOn = undefined;
    this.service.endStreams();
    server.forceShutdown();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  private async register(): Promise<void> {
    const client = new grpc.Client(unixAddress(this.kubeletSocket), grpc.credentials.createInsecure());
    this.service.nextRegistration();
    const request = {
      version: DevicePluginApi.version,
      endpoint: socketFileName(this.o.resourceName),
      resource_name: this.o.resourceName,
      options: pluginOptions,
    };
    try {
      const { Register } = devicePluginProto().Registration;
      await unaryCall(client, Register, request, this.o.registerTimeoutMs ?? 5000);
    } catch (err) {
      throw new LeafbridgeError('DEVICEPLUGIN_REGISTER', `register with the kubelet: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      client.close();
    }
    this.registrations++;
    this.logger.info({ endpoint: request.endpoint }, 'registered with the kubelet');
  }
}

/** A file's identity: inode and birth time, so a file deleted and created again counts as another file. */
async function identity(path: string): Promise<string | undefined> {
  try {
    const s = await stat(path);
    return `${s.ino}:${s.birthtimeMs}:${s.ctimeMs}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
