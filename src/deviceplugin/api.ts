import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { LeafbridgeError } from '../util/errors.js';
import { findProto, loadProto } from '../util/protoFiles.js';

/** Constants of the kubelet device-plugin API (k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/constants.go). */
export const DevicePluginApi = {
  version: 'v1beta1',
  supportedVersions: ['v1beta1'],
  devicePluginPath: '/var/lib/kubelet/device-plugins/',
  kubeletSocket: 'kubelet.sock',
  healthy: 'Healthy',
  unhealthy: 'Unhealthy',
} as const;

export type Health = typeof DevicePluginApi.healthy | typeof DevicePluginApi.unhealthy;

// The messages as @grpc/proto-loader hands them over (keepCase, defaults, longs as numbers): field names are
// the proto's own. Optional fields are those a sender may leave out; a receiver gets every field filled in.
export type Empty = Record<string, never>;

export interface DevicePluginOptions {
  pre_start_required: boolean;
  get_preferred_allocation_available: boolean;
}

export interface RegisterRequest {
  version: string;
  endpoint: string;
  resource_name: string;
  options?: DevicePluginOptions;
}

export interface NUMANode {
  ID: number;
}

export interface TopologyInfo {
  nodes: NUMANode[];
}

export interface Device {
  ID: string;
  health: string;
  topology?: TopologyInfo | null;
}

export interface ListAndWatchResponse {
  devices: Device[];
}

export interface ContainerAllocateRequest {
  devices_ids: string[];
}

export interface AllocateRequest {
  container_requests: ContainerAllocateRequest[];
}

export interface Mount {
  container_path: string;
  host_path: string;
  read_only?: boolean;
}

export interface DeviceSpec {
  container_path: string;
  host_path: string;
  permissions?: string;
}

export interface CDIDevice {
  name: string;
}

export interface ContainerAllocateResponse {
  envs?: Record<string, string>;
  mounts?: Mount[];
  devices?: DeviceSpec[];
  annotations?: Record<string, string>;
  cdi_devices?: CDIDevice[];
}

export interface AllocateResponse {
  container_responses: ContainerAllocateResponse[];
}

export interface ContainerPreferredAllocationRequest {
  available_deviceIDs: string[];
  must_include_deviceIDs: string[];
  allocation_size: number;
}

export interface PreferredAllocationRequest {
  container_requests: ContainerPreferredAllocationRequest[];
}

export interface ContainerPreferredAllocationResponse {
  deviceIDs: string[];
}

export interface PreferredAllocationResponse {
  container_responses: ContainerPreferredAllocationResponse[];
}

export interface PreStartContainerRequest {
  devices_ids: string[];
}

export type PreStartContainerResponse = Empty;

/** One RPC of the API: its path and (de)serializers, typed by its request and response. */
export type Method<Req, Res> = grpc.MethodDefinition<Req, Res>;

export interface DevicePluginMethods {
  GetDevicePluginOptions: Method<Empty, DevicePluginOptions>;
  ListAndWatch: Method<Empty, ListAndWatchResponse>;
  GetPreferredAllocation: Method<PreferredAllocationRequest, PreferredAllocationResponse>;
  Allocate: Method<AllocateRequest, AllocateResponse>;
  PreStartContainer: Method<PreStartContainerRequest, PreStartContainerResponse>;
}

export interface RegistrationMethods {
  Register: Method<RegisterRequest, Empty>;
}

export interface DevicePluginProto {
  DevicePlugin: DevicePluginMethods & grpc.ServiceDefinition;
  Registration: RegistrationMethods & grpc.ServiceDefinition;
}

/**
 * Where a proto file of ours is (api.proto unless told): next to this module (dist, once the build copies
 * it), else `src/deviceplugin/proto/` found by walking up from this module (running from src/ under vitest,
 * or from dist/ before the copy).
 */
export function protoPath(from = dirname(fileURLToPath(import.meta.url)), file = 'api.proto'): string {
  const found = findProto(from, 'deviceplugin', file);
  if (found) return found;
  throw new LeafbridgeError('DEVICEPLUGIN_PROTO_MISSING', `device-plugin ${file} not found from ${from}`);
}

let loaded: DevicePluginProto | undefined;

/** The v1beta1 services, loaded once from api.proto. */
export function devicePluginProto(): DevicePluginProto {
  if (loaded) return loaded;
  const definition = loadProto(protoPath());
  // proto-loader types services as untyped method tables; the interfaces above give them their messages.
  loaded = {
    DevicePlugin: definition['v1beta1.DevicePlugin'] as unknown as DevicePluginProto['DevicePlugin'],
    Registration: definition['v1beta1.Registration'] as unknown as DevicePluginProto['Registration'],
  };
  return loaded;
}

/** The gRPC address of a unix socket file. */
export function unixAddress(socketPath: string): string {
  return `unix://${socketPath}`;
}

/** One unary call with a deadline, as a promise. */
export function unaryCall<Req, Res>(
  client: grpc.Client,
  method: Method<Req, Res>,
  request: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, response) =>
        err || response === undefined ? reject(err ?? new Error('empty response')) : resolve(response),
    );
  });
}

/** Open a server stream; the caller listens for `data`, `error` and `end`. */
export function serverStream<Req, Res>(
  client: grpc.Client,
  method: Method<Req, Res>,
  request: Req,
): grpc.ClientReadableStream<Res> {
  return client.makeServerStreamRequest(
    method.path,
    method.requestSerialize,
    method.responseDeserialize,
    request,
  );
}
