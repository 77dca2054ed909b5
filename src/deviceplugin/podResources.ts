import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';
import { loadProto } from '../util/protoFiles.js';
import { type CDIDevice, type Method, protoPath, type TopologyInfo, unaryCall, unixAddress } from './api.js';

/** Where the kubelet serves the PodResources API. */
export const POD_RESOURCES_SOCKET = '/var/lib/kubelet/pod-resources/kubelet.sock';

/** The prefix of leafbridge's extended resources. */
export const LEAFBRIDGE_RESOURCE_PREFIX = 'leafbridge.io/';

// The v1 messages as @grpc/proto-loader hands them over (keepCase, defaults, longs as numbers), as in api.ts:
// optional fields are those a sender may leave out; a receiver gets every field filled in.

export interface ContainerDevices {
  resource_name: string;
  device_ids: string[];
  topology?: TopologyInfo | null;
}

export interface ContainerMemory {
  memory_type: string;
  size: number;
  topology?: TopologyInfo | null;
}

export interface ClaimResource {
  cdi_devices: CDIDevice[];
  driver_name?: string;
  pool_name?: string;
  device_name?: string;
}

export interface DynamicResource {
  claim_name: string;
  claim_namespace: string;
  claim_resources: ClaimResource[];
}

export interface ContainerResources {
  name: string;
  devices: ContainerDevices[];
  cpu_ids?: number[];
  memory?: ContainerMemory[];
  dynamic_resources?: DynamicResource[];
}

export interface PodResources {
  name: string;
  namespace: string;
  containers: ContainerResources[];
}

export type ListPodResourcesRequest = Record<string, never>;

export interface ListPodResourcesResponse {
  pod_resources: PodResources[];
}

export type AllocatableResourcesRequest = Record<string, never>;

export interface AllocatableResourcesResponse {
  devices: ContainerDevices[];
  cpu_ids?: number[];
  memory?: ContainerMemory[];
}

export interface GetPodResourcesRequest {
  pod_name: string;
  pod_namespace: string;
}

export interface GetPodResourcesResponse {
  pod_resources: PodResources | null;
}

export interface PodResourcesListerMethods {
  List: Method<ListPodResourcesRequest, ListPodResourcesResponse>;
  GetAllocatableResources: Method<AllocatableResourcesRequest, AllocatableResourcesResponse>;
  Get: Method<GetPodResourcesRequest, GetPodResourcesResponse>;
}

export interface PodResourcesProto {
  PodResourcesLister: PodResourcesListerMethods & grpc.ServiceDefinition;
}

// The answer of List as leafbridge uses it: who holds which devices.

export interface DeviceAllocation {
  resourceName: string;
  deviceIds: string[];
}

export interface ContainerAllocation {
  name: string;
  devices: DeviceAllocation[];
}

export interface PodAllocation {
  namespace: string;
  name: string;
  containers: ContainerAllocation[];
}

export interface PodResourcesList {
  pods: PodAllocation[];
}

const PROTO_FILE = 'podresources.proto';
const SERVICE = 'v1.PodResourcesLister';

/** Where podresources.proto is: found as api.ts finds api.proto (beside this module, else under src/). */
let loaded: PodResourcesProto | undefined;

/** The v1 PodResourcesLister service, loaded once. */
export function podResourcesProto(): PodResourcesProto {
  if (loaded) return loaded;
  const definition = loadProto(protoPath(undefined, PROTO_FILE));
  const service = definition[SERVICE] as unknown as PodResourcesProto['PodResourcesLister'];
  loaded = { PodResourcesLister: service };
  return loaded;
}

/**
 * The kubelet's List: every active pod with the devices of its containers. One connection per call, closed
 * after it. A missing socket, a failed call or no answer within `timeoutMs` is a `PODRESOURCES_UNAVAILABLE`.
 */
export async function listPodResources(socketPath: string, timeoutMs = 5000): Promise<PodResourcesList> {
  const { List } = podResourcesProto().PodResourcesLister;
  const unavailable = (why: string, cause?: unknown) =>
    new LeafbridgeError(
      'PODRESOURCES_UNAVAILABLE',
      `kubelet PodResources at ${socketPath} unavailable: ${why}`,
      {
        cause,
      },
    );
  let info: Stats;
  try {
    info = await stat(socketPath);
  } catch (err) {
    throw unavailable(errorMessage(err), err);
  }
  if (!info.isSocket()) throw unavailable('not a socket');
  const client = new grpc.Client(unixAddress(socketPath), grpc.credentials.createInsecure());
  try {
    return toList(await unaryCall(client, List, {}, timeoutMs));
  } catch (err) {
    throw unavailable(`List failed: ${errorMessage(err)}`, err);
  } finally {
    client.close();
  }
}

/** The device IDs of every resource whose name starts with `prefix`, whichever pod holds them. */
export function slotsInUse(list: PodResourcesList, prefix = LEAFBRIDGE_RESOURCE_PREFIX): Set<string> {
  const devices = list.pods.flatMap((p) => p.containers).flatMap((c) => c.devices);
  return new Set(devices.filter((d) => d.resourceName.startsWith(prefix)).flatMap((d) => d.deviceIds));
}

function toList(response: ListPodResourcesResponse): PodResourcesList {
  return {
    pods: (response.pod_resources ?? []).map((p) => ({
      namespace: p.namespace,
      name: p.name,
      containers: (p.containers ?? []).map((c) => ({
        name: c.name,
        devices: (c.devices ?? []).map((d) => ({
          resourceName: d.resource_name,
          deviceIds: [...(d.device_ids ?? [])],
        })),
      })),
    })),
  };
}
