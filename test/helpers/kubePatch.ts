import { isDeepStrictEqual } from 'node:util';
import { isObject } from './kubeSchema.js';
import { KubeError, status } from './kubeStatus.js';

/** JSON merge patch (RFC 7386): objects merge, `null` deletes, everything else (arrays too) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface Operation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

/** JSON patch (RFC 6902). A failed operation or `test` is a 422, as the API server answers. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw patchError('a JSON patch must be an array of operations');
  let doc = structuredClone(target);
  for (const raw of ops as Operation[]) {
    const { op, path } = raw;
    switch (op) {
      case 'add':
        doc = put(doc, path, structuredClone(raw.value), 'add');
        break;
      case 'replace':
        get(doc, path);
        doc = put(doc, path, structuredClone(raw.value), 'replace');
        break;
      case 'remove':
        doc = remove(doc, path);
        break;
      case 'move': {
        const v = get(doc, raw.from ?? '');
        doc = put(remove(doc, raw.from ?? ''), path, v, 'add');
        break;
      }
      case 'copy':
        doc = put(doc, path, structuredClone(get(doc, raw.from ?? '')), 'add');
        break;
      case 'test':
        if (!isDeepStrictEqual(get(doc, path), raw.value)) throw patchError(`testing value ${path} failed`);
        break;
      default:
        throw patchError(`Unexpected kind: ${String(op)}`);
    }
  }
  return doc;
}

function patchError(message: string): KubeError {
  return new KubeError(
    status(422, 'Invalid', `the server rejected our request due to an error in our request: ${message}`),
  );
}

function tokens(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw patchError(`invalid path ${path}`);
  return path
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function parentOf(doc: unknown, path: string): { parent: unknown; key: string } {
  const ts = tokens(path);
  const key = ts.pop();
  if (key === undefined) return { parent: undefined, key: '' };
  let cur = doc;
  for (const t of ts) {
    cur = Array.isArray(cur) ? cur[Number(t)] : isObject(cur) ? cur[t] : undefined;
    if (cur === undefined) throw patchError(`doc is missing path: ${path}`);
  }
  return { parent: cur, key };
}

function get(doc: unknown, path: string): unknown {
  if (path === '') return doc;
  const { parent, key } = parentOf(doc, path);
  const v = Array.isArray(parent) ? parent[Number(key)] : isObject(parent) ? parent[key] : undefined;
  if (v === undefined) throw patchError(`doc is missing key: ${path}`);
  return v;
}

function put(doc: unknown, path: string, value: unknown, mode: 'add' | 'replace'): unknown {
  if (path === '') return value;
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : Number(key);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw patchError(`index out of range: ${path}`);
    if (mode === 'add') parent.splice(i, 0, value);
    else parent[i] = value;
  } else if (isObject(parent)) parent[key] = value;
  else throw patchError(`doc is missing path: ${path}`);
  return doc;
}

function remove(doc: unknown, path: string): unknown {
  get(doc, path);
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else if (isObject(parent)) delete parent[key];
  return doc;
}
