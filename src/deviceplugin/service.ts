import type * as grpc from '@grpc/grpc-js';
import type { Clock } from '../util/clock.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type {
  AllocateRequest,
  AllocateResponse,
  ContainerAllocateRequest,
  ContainerAllocateResponse,
  ContainerPreferredAllocationRequest,
  ContainerPreferredAllocationResponse,
  Device,
  DevicePluginOptions,
  Empty,
  Health,
  ListAndWatchResponse,
  PreferredAllocationRequest,
  PreferredAllocationResponse,
  PreStartContainerRequest,
  PreStartContainerResponse,
} from './api.js';
import { DevicePluginError, toServiceError } from './errors.js';

/** One device (or slot) of the resource, as the kubelet sees it. */
export interface PluginDevice {
  id: string;
  health: Health;
}

/** What the plugin needs from the layer above it (slots and claims): the devices, and what to hand a pod. */
export interface DevicePluginCallbacks {
  /** The resource's devices now. Called for every new ListAndWatch stream and on every `update()`. */
  listDevices: () => readonly PluginDevice[];
  /**
   * One response per container request, in order. Throw a `DevicePluginError` to choose the gRPC status
   * (RESOURCE_EXHAUSTED when no slot is free, FAILED_PRECONDITION when the device is offline, ...).
   */
  allocate: (
    requests: readonly ContainerAllocateRequest[],
  ) => ContainerAllocateResponse[] | Promise<ContainerAllocateResponse[]>;
  /** Which devices to prefer; by default the required ones, then the available ones in the kubelet's order. */
  preferred?: (
    requests: readonly ContainerPreferredAllocationRequest[],
  ) => ContainerPreferredAllocationResponse[];
}

export interface DevicePluginServiceOptions {
  resourceName: string;
  /** What GetDevicePluginOptions answers. */
  options: DevicePluginOptions;
  callbacks: DevicePluginCallbacks;
  logger: Logger;
  clock: Pick<Clock, 'now'>;
  /**
   * The kubelet ended (or broke) the last open ListAndWatch stream of the current registration, after it was
   * open `openMs`. Not called for streams the service ends itself, nor for those of an earlier registration.
   */
  onDropped?: (openMs: number) => void;
}

type DeviceStream = grpc.ServerWritableStream<Empty, ListAndWatchResponse>;

interface OpenStream {
  /** The device list it was last sent, as JSON. */
  sent: string;
  /** The registration it was opened for (see `nextRegistration()`). */
  registration: number;
  openedAt: number;
}

/**
 * The DevicePlugin service of one resource: the gRPC handlers, and the open ListAndWatch streams that
 * `publish()` sends the device list to. It tells (`onDropped`) when the kubelet has ended the stream of the
 * current registration: the kubelet does not open one again by itself, the plugin has to register again.
 */
export class DevicePluginService {
  private readonly streams = new Map<DeviceStream, OpenStream>();
  private registration = 0;
  private readonly resourceName: string;
  private readonly callbacks: DevicePluginCallbacks;
  private readonly logger: Logger;

  constructor(private readonly o: DevicePluginServiceOptions) {
    this.resourceName = o.resourceName;
    this.callbacks = o.callbacks;
    this.logger = o.logger;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Send the device list to every open stream, unless it is the list they already have. */
  publish(): void {
    const devices = this.devices();
    if (!devices) return;
    const key = JSON.stringify(devices);
    for (const [stream, open] of this.streams) if (open.sent !== key) this.send(stream, devices, key);
  }

  /**
   * A registration is about to be sent: streams opened from now on are its own, and those opened before may end
   * without a word (the kubelet ends the stream of the registration a new one replaces).
   */
  nextRegistration(): void {
    this.registration++;
  }

  /** End every stream (the plugin is stopping or moving to a new socket). */
  endStreams(): void {
    const streams = [...this.streams.keys()];
    this.streams.clear(); // first: ending them is not the kubelet dropping them
    for (const stream of streams) stream.end();
  }

  /** The handlers, for `server.addService(proto.DevicePlugin, ...)`. */
  implementation(): grpc.UntypedServiceImplementation {
    return {
      GetDevicePluginOptions: this.getOptions,
      ListAndWatch: this.listAndWatch,
      GetPreferredAllocation: this.getPreferredAllocation,
      Allocate: this.allocate,
      PreStartContainer: this.preStartContainer,
    };
  }

  private readonly getOptions: grpc.handleUnaryCall<Empty, DevicePluginOptions> = (_call, callback) => {
    callback(null, this.o.options);
  };

  private readonly listAndWatch: grpc.handleServerStreamingCall<Empty, ListAndWatchResponse> = (call) => {
    const devices = this.devices();
    if (!devices) {
      call.destroy(new Error('listing devices failed'));
      return;
    }
    this.streams.set(call, { sent: '', registration: this.registration, openedAt: this.o.clock.now() });
    const ended = () => this.ended(call);
    call.on('cancelled', ended);
    call.on('error', ended);
    call.on('close', ended);
    this.logger.info({ devices: devices.length }, 'kubelet opened ListAndWatch');
    this.send(call, devices, JSON.stringify(devices));
  };

  private send(stream: DeviceStream, devices: Device[], key: string): void {
    try {
      stream.write({ devices });
      const open = this.streams.get(stream);
      if (open) open.sent = key;
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'ListAndWatch write failed; dropping the stream');
      this.ended(stream);
    }
  }

  /** A stream is over: forget it, and tell if it was the last one of the current registration. */
  private ended(stream: DeviceStream): void {
    const open = this.streams.get(stream);
    if (!open) return; // ended by endStreams(), or already seen
    this.streams.delete(stream);
    if (open.registration !== this.registration) return;
    for (const other of this.streams.values()) if (other.registration === this.registration) return;
    this.o.onDropped?.(this.o.clock.now() - open.openedAt);
  }

  private readonly allocate: grpc.handleUnaryCall<AllocateRequest, AllocateResponse> = (call, callback) => {
    const requests = call.request.container_requests;
    this.allocateAll(requests).then(
      (responses) => callback(null, { container_responses: responses }),
      (err: unknown) => {
        const ids = requests.map((r) => r.devices_ids);
        this.logger.warn({ ids, err: errorMessage(err) }, 'Allocate failed');
        callback(toServiceError(err, `allocate ${this.resourceName}`));
      },
    );
  };

  private async allocateAll(
    requests: readonly ContainerAllocateRequest[],
  ): Promise<ContainerAllocateResponse[]> {
    if (requests.length === 0) throw new DevicePluginError('INVALID_ARGUMENT', 'no container requests');
    const known = new Set((this.devices() ?? []).map((d) => d.ID));
    const unknown = requests.flatMap((r) => r.devices_ids).filter((id) => !known.has(id));
    if (unknown.length > 0)
      throw new DevicePluginError('NOT_FOUND', `unknown device ids: ${unknown.join(', ')}`);
    const responses = await this.callbacks.allocate(requests);
    if (responses.length !== requests.length) {
      const counts = `${responses.length} responses for ${requests.length} containers`;
      throw new DevicePluginError('INTERNAL', `allocate returned ${counts}`);
    }
    this.logger.info({ ids: requests.map((r) => r.devices_ids) }, 'allocated');
    return responses;
  }

  private readonly getPreferredAllocation: grpc.handleUnaryCall<
    PreferredAllocationRequest,
    PreferredAllocationResponse
  > = (call, callback) => {
    try {
      const requests = call.request.container_requests;
      const responses = (this.callbacks.preferred ?? preferInOrder)(requests);
      callback(null, { container_responses: responses });
    } catch (err) {
      callback(toServiceError(err, `preferred allocation ${this.resourceName}`));
    }
  };

  private readonly preStartContainer: grpc.handleUnaryCall<
    PreStartContainerRequest,
    PreStartContainerResponse
  > = (_call, callback) => {
    callback(null, {});
  };

  private devices(): Device[] | undefined {
    try {
      return this.callbacks.listDevices().map((d) => ({ ID: d.id, health: d.health }));
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'listing devices failed');
      return undefined;
    }
  }
}

/** The default preference: the devices that must be included, then the available ones, up to the size asked. */
export function preferInOrder(
  requests: readonly ContainerPreferredAllocationRequest[],
): ContainerPreferredAllocationResponse[] {
  return requests.map((r) => {
    const ids = [...new Set([...r.must_include_deviceIDs, ...r.available_deviceIDs])];
    return { deviceIDs: ids.slice(0, Math.max(r.allocation_size, r.must_include_deviceIDs.length)) };
  });
}
