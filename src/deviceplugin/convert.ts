import { createHash } from 'node:crypto';
import type { DeviceMount, DeviceNode } from '../model/handler.js';
import type { DeviceSpec, Mount } from './api.js';

/** A device node as the kubelet takes it: the same path in the container unless told, `rw` unless told. */
export function deviceSpec(node: DeviceNode): DeviceSpec {
  return {
    host_path: node.hostPath,
    container_path: node.containerPath ?? node.hostPath,
    permissions: node.permissions ?? 'rw',
  };
}

export function mount(m: DeviceMount): Mount {
  return { host_path: m.hostPath, container_path: m.containerPath, read_only: m.readOnly ?? false };
}

/** Hex digits of the resource-name hash in a socket name: 48 bits, unique enough for a node's resources. */
const SOCKET_HASH_CHARS = 12;

/**
 * The socket file of the plugin for one resource, in the plugin directory: `leafbridge-<hash>.sock`, where
 * `<hash>` is 12 hex of a SHA-256 of the resource name. 28 bytes whatever the name, so the socket path fits
 * the 107 bytes of a unix socket path under a long kubelet root (MicroK8s:
 * `/var/snap/microk8s/common/var/lib/kubelet/device-plugins/`, 57 bytes); the same resource gets the same
 * name after a restart, so a stale socket of ours is found and replaced.
 */
export function socketFileName(resourceName: string): string {
  const hash = createHash('sha256').update(resourceName).digest('hex').slice(0, SOCKET_HASH_CHARS);
  return `leafbridge-${hash}.sock`;
}
