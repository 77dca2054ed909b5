import { dirname, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import type { DiscoveredDevice } from '../../model/handler.js';
import { LeafbridgeError } from '../../util/errors.js';
import { findProto, loadProto } from '../../util/protoFiles.js';

/**
 * Akri's discovery-handler protocol (proto/discovery.proto, package v0) as @grpc/proto-loader hands its
 * messages over: the proto's own field names, every field filled in on receipt, enums as their names.
 */
export const AKRI_REGISTRATION_SOCKET = 'agent-registration.sock';

export const EndpointType = { uds: 'UDS', network: 'NETWORK' } as const;

export interface RegisterDiscoveryHandlerRequest {
  name: string;
  endpoint: string;
  endpoint_type: string;
  shared: boolean;
}

export interface DiscoverRequest {
  discovery_details: string;
  discovery_properties: Record<string, { vec?: Buffer }>;
}

export interface AkriMount {
  container_path: string;
  host_path: string;
  read_only: boolean;
}

export interface AkriDeviceSpec {
  container_path: string;
  host_path: string;
  permissions: string;
}

export interface AkriDevice {
  id: string;
  properties: Record<string, string>;
  mounts: AkriMount[];
  device_specs: AkriDeviceSpec[];
}

export interface DiscoverResponse {
  devices: AkriDevice[];
}

type Method<Req, Res> = grpc.MethodDefinition<Req, Res>;

export interface AkriProto {
  Registration: {
    RegisterDiscoveryHandler: Method<RegisterDiscoveryHandlerRequest, object>;
  } & grpc.ServiceDefinition;
  DiscoveryHandler: { Discover: Method<DiscoverRequest, DiscoverResponse> } & grpc.ServiceDefinition;
}

/** discovery.proto next to this module (dist, once the build copies it), else under src/ walking up. */
function protoFile(from = dirname(fileURLToPath(import.meta.url))): string {
  const found = findProto(from, 'discovery/external', 'discovery.proto');
  if (found) return found;
  throw new LeafbridgeError('AKRI_PROTO_MISSING', `discovery.proto not found from ${from}`);
}

let loaded: AkriProto | undefined;

/** Akri's two services, loaded once. */
export function akriProto(): AkriProto {
  if (loaded) return loaded;
  const definition = loadProto(protoFile());
  loaded = {
    Registration: definition['v0.Registration'] as unknown as AkriProto['Registration'],
    DiscoveryHandler: definition['v0.DiscoveryHandler'] as unknown as AkriProto['DiscoveryHandler'],
  };
  return loaded;
}

/** Why a registration is refused, or undefined when it is acceptable. */
export function registrationProblem(r: RegisterDiscoveryHandlerRequest): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(r.name))
    return 'name must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit';
  if (r.endpoint.length === 0 || r.endpoint.length > 1024) return 'endpoint must be 1-1024 characters';
  if (r.endpoint_type === EndpointType.uds) {
    return isAbsolute(r.endpoint) ? undefined : 'a UDS endpoint must be an absolute socket path';
  }
  if (r.endpoint_type === EndpointType.network) {
    return /^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(r.endpoint)
      ? undefined
      : 'a NETWORK endpoint must be host:port or http://host:port';
  }
  return `unknown endpoint type ${r.endpoint_type}`;
}

/** The gRPC target of a registered endpoint. */
export function endpointTarget(
  r: Pick<RegisterDiscoveryHandlerRequest, 'endpoint' | 'endpoint_type'>,
): string {
  return r.endpoint_type === EndpointType.uds
    ? `unix://${r.endpoint}`
    : r.endpoint.replace(/^https?:\/\//, '');
}

const PERMISSIONS = /^[rwm]{1,3}$/;

/**
 * One Akri device as a leafbridge one: the id and properties as they are, mounts and device specs as the
 * device plugin hands them to containers. A string says why the device is unusable (the manager checks ids
 * and properties again; paths are checked here, where their Akri form is known).
 */
export function toDiscovered(d: AkriDevice): DiscoveredDevice | string {
  for (const m of d.mounts) {
    if (!isAbsolute(m.host_path) || !isAbsolute(m.container_path)) return 'a mount path is not absolute';
  }
  for (const s of d.device_specs) {
    if (!isAbsolute(s.host_path)) return 'a device spec host path is not absolute';
    if (s.container_path !== '' && !isAbsolute(s.container_path))
      return 'a device spec container path is not absolute';
    if (s.permissions !== '' && !PERMISSIONS.test(s.permissions))
      return `device spec permissions ${JSON.stringify(s.permissions.slice(0, 10))} are not r, w, m`;
  }
  return {
    id: d.id,
    properties: { ...d.properties },
    mounts: d.mounts.map((m) => ({
      hostPath: m.host_path,
      containerPath: m.container_path,
      ...(m.read_only ? { readOnly: true } : {}),
    })),
    deviceNodes: d.device_specs.map((s) => ({
      hostPath: s.host_path,
      ...(s.container_path ? { containerPath: s.container_path } : {}),
      ...(s.permissions ? { permissions: s.permissions } : {}),
    })),
  };
}
