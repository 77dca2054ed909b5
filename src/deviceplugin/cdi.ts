/**
 * Container Device Interface (CDI) spec files for leafbridge Devices. With CDI on, Allocate answers with
 * fully qualified CDI names (`leafbridge.io/device=<Device name>`) and the container runtime (containerd,
 * CRI-O) applies the edits this module writes into the CDI spec directory: env from the Device's
 * properties, its device nodes and its mounts, as the kubelet path (convert.ts) would hand them over.
 *
 * CDI rules followed here (cncf-tags/container-device-interface: SPEC.md, specs-go/version.go,
 * pkg/parser/parser.go, api/producer/validator-default.go, pkg/cdi/spec-dirs.go):
 * - a spec needs at least one device, unique device names, and no device with empty container edits;
 * - `cdiVersion` 0.6.0 is the lowest that covers what we emit: spec annotations (0.6.0), `hostPath` on
 *   device nodes and device names starting with a digit (0.5.0), the mount `type` field (0.4.0);
 * - runtimes read every `*.json` and `*.yaml` file in /etc/cdi and /var/run/cdi, so the temporary file of
 *   an atomic write must end in something else (`.tmp`).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceMount, DeviceNode } from '../model/handler.js';
import type { DeviceObject } from '../model/resources.js';
import { errorMessage, LeafbridgeError } from '../util/errors.js';

export const CDI_KIND = 'leafbridge.io/device';
export const CDI_VERSION = '0.6.0';
/** Where runtimes look for generated (as opposed to installed, /etc/cdi) spec files. */
export const CDI_SPEC_DIR = '/var/run/cdi';
/** The spec file name: `<vendor>-<class>` plus the extension that picks the encoding. */
export const CDI_SPEC_FILE = `${CDI_KIND.replace('/', '-')}.json`;

/** Spec annotation keys are Kubernetes qualified names, checked as Kubernetes checks annotations. */
export const CDI_ANNOTATIONS = {
  writtenBy: 'leafbridge.io/written-by',
  node: 'leafbridge.io/node',
} as const;
const WRITER = 'leafbridge-agent';

export interface CdiDeviceNode {
  /** Path in the container. */
  path: string;
  /** Path on the host; `path` when absent. */
  hostPath?: string;
  /** cgroup permissions, any of r, w, m. */
  permissions?: string;
  type?: 'b' | 'c' | 'u' | 'p';
  major?: number;
  minor?: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  /** OCI mount options, e.g. `["rbind", "rprivate", "ro"]`. */
  options?: string[];
  type?: string;
}

export interface CdiContainerEdits {
  /** `KEY=VALUE` entries appended to the container's environment. */
  env?: string[];
  deviceNodes?: CdiDeviceNode[];
  mounts?: CdiMount[];
}

export interface CdiDevice {
  name: string;
  annotations?: Record<string, string>;
  containerEdits: CdiContainerEdits;
}

export interface CdiSpec {
  cdiVersion: typeof CDI_VERSION;
  kind: typeof CDI_KIND;
  annotations?: Record<string, string>;
  devices: CdiDevice[];
  /** Edits for every container that gets any device of this spec; leafbridge has none. */
  containerEdits?: CdiContainerEdits;
}

/**
 * Told about each Device left out of a spec (`left` is `device`: its name is no valid CDI device name, another
 * Device has the same name, or one of its device nodes or mounts could not be written) and each property left
 * out of a Device's env (`left` is `property`: its key is no valid environment variable name; the Device itself
 * is in the spec). The reason names keys, never values.
 */
export type CdiSkipListener = (device: DeviceObject, reason: string, left: 'device' | 'property') => void;

export interface CdiSpecOptions {
  /** The node whose agent writes the spec, recorded in an annotation. */
  node?: string;
  onSkip?: CdiSkipListener;
}

/** A CDI device name: ASCII letters and digits, with `_ . : -` between (pkg/parser ValidateDeviceName). */
const DEVICE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?$/;

export function isCdiDeviceName(name: string): boolean {
  return DEVICE_NAME.test(name);
}

/** The fully qualified CDI name of a Device, as Allocate hands it to the kubelet. */
export function cdiName(deviceName: string): string {
  if (!isCdiDeviceName(deviceName)) {
    throw new LeafbridgeError(
      'CDI_INVALID_NAME',
      `${JSON.stringify(deviceName)} is not a valid CDI device name: it must start and end with an ASCII ` +
        'letter or digit and hold only letters, digits, "_", ".", ":" and "-"',
    );
  }
  return `${CDI_KIND}=${deviceName}`;
}

/** One CDI device per Device, sorted by name; Devices that cannot be written are left out (see onSkip). */
export function cdiSpec(devices: readonly DeviceObject[], options: CdiSpecOptions = {}): CdiSpec {
  const skip = options.onSkip ?? (() => {});
  const byName = new Map<string, CdiDevice>();
  for (const d of [...devices].sort((a, b) => compare(a.metadata.name, b.metadata.name))) {
    const problem = deviceProblem(d, byName);
    if (problem) skip(d, problem, 'device');
    else byName.set(d.metadata.name, cdiDevice(d, skip));
  }
  const annotations: Record<string, string> = { [CDI_ANNOTATIONS.writtenBy]: WRITER };
  if (options.node) annotations[CDI_ANNOTATIONS.node] = options.node;
  return { cdiVersion: CDI_VERSION, kind: CDI_KIND, annotations, devices: [...byName.values()] };
}

function deviceProblem(d: DeviceObject, seen: ReadonlyMap<string, CdiDevice>): string | undefined {
  const name = d.metadata.name;
  if (!isCdiDeviceName(name)) return `${JSON.stringify(name)} is not a valid CDI device name`;
  if (seen.has(name)) return `another Device is already named ${name} (namespace ${d.metadata.namespace})`;
  if ((d.spec.deviceNodes ?? []).some((n) => !n.hostPath || n.containerPath === ''))
    return 'a device node has an empty path';
  if ((d.spec.deviceNodes ?? []).some((n) => !/^[rwm]*$/.test(n.permissions ?? '')))
    return 'a device node has permissions other than r, w, m';
  if ((d.spec.mounts ?? []).some((m) => !m.hostPath || !m.containerPath)) return 'a mount has an empty path';
  return undefined;
}

function cdiDevice(d: DeviceObject, skip: CdiSkipListener): CdiDevice {
  const edits: CdiContainerEdits = { env: envOf(d, skip) };
  const nodes = d.spec.deviceNodes ?? [];
  const mounts = d.spec.mounts ?? [];
  if (nodes.length > 0) edits.deviceNodes = nodes.map(cdiDeviceNode);
  if (mounts.length > 0) edits.mounts = mounts.map(cdiMount);
  return { name: d.metadata.name, containerEdits: edits };
}

/**
 * The Device's properties as `KEY=VALUE`, keys as given and sorted (so the file stays byte-identical
 * whichever store the Device came from), then `LEAFBRIDGE_CDI_DEVICE_<NAME>=<name>`: it tells the container
 * which Devices the runtime injected, and keeps a Device with nothing else to hand over from having the
 * empty edits CDI rejects (one such device would make the runtime drop the whole spec file).
 */
function envOf(d: DeviceObject, skip: CdiSkipListener): string[] {
  const env: string[] = [];
  for (const [key, value] of Object.entries(d.spec.properties ?? {}).sort(([a], [b]) => compare(a, b))) {
    if (key === '' || key.includes('=') || key.includes('\0') || value.includes('\0'))
      skip(
        d,
        `property ${JSON.stringify(key)} is not a valid environment variable (empty, "=" or NUL)`,
        'property',
      );
    else env.push(`${key}=${value}`);
  }
  env.push(
    `LEAFBRIDGE_CDI_DEVICE_${d.metadata.name.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}=${d.metadata.name}`,
  );
  return env;
}

/** As convert.ts's deviceSpec: the host path in the container unless told otherwise, `rw` unless told. */
function cdiDeviceNode(node: DeviceNode): CdiDeviceNode {
  return {
    path: node.containerPath ?? node.hostPath,
    hostPath: node.hostPath,
    permissions: node.permissions ?? 'rw',
  };
}

/** As convert.ts's mount: a recursive bind mount, private like the kubelet's, read-only when asked. */
function cdiMount(m: DeviceMount): CdiMount {
  return {
    hostPath: m.hostPath,
    containerPath: m.containerPath,
    type: 'bind',
    options: ['rbind', 'rprivate', m.readOnly ? 'ro' : 'rw'],
  };
}

/**
 * Writes the spec for these Devices to `<dir>/leafbridge.io-device.json` (mode 0644, `dir` created when
 * missing) and returns its path; leaves the file alone when it already holds the same bytes. A runtime never
 * sees a half-written file: the bytes go to a `.tmp` file in the same directory, are synced, then renamed
 * over. With no Device left to write the file is removed and the answer is undefined. The caller passes the
 * Devices of its own node and serialises calls for one directory.
 */
export async function writeCdiSpec(
  dir: string,
  devices: readonly DeviceObject[],
  node: string,
  onSkip?: CdiSkipListener,
): Promise<string | undefined> {
  const spec = cdiSpec(devices, { node, onSkip });
  if (spec.devices.length === 0) {
    await removeCdiSpec(dir);
    return undefined;
  }
  const path = join(dir, CDI_SPEC_FILE);
  const content = `${JSON.stringify(spec, null, 2)}\n`;
  try {
    if ((await readIfExists(path)) === content) return path;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await replaceFile(path, content);
  } catch (err) {
    throw new LeafbridgeError('CDI_WRITE_FAILED', `cannot write CDI spec ${path}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return path;
}

export async function removeCdiSpec(dir: string): Promise<void> {
  await rm(join(dir, CDI_SPEC_FILE), { force: true });
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const file = await open(tmp, 'wx', 0o644);
    try {
      await file.chmod(0o644); // whatever the umask
      await file.writeFile(content, 'utf8');
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
