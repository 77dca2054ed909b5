import type { DeviceMount, DeviceNode } from '../discovery/handler.js';
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

/**
 * The socket file of the plugin for one resource, in the plugin directory: `leafbridge-<name>.sock`, where
 * `<name>` is the resource name without the `leafbridge.io/` domain and with anything but `[A-Za-z0-9._-]`
 * replaced by `_` (another domain stays in: `example.com/x` → `leafbridge-example.com_x.sock`).
 */
export function socketFileName(resourceName: string): string {
  const name = resourceName.replace(/^leafbridge\.io\//, '').replace(/[^A-Za-z0-9._-]/g, '_');
  return `leafbridge-${name}.sock`;
}
