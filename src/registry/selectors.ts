import type { DeviceObject } from '../model/resources.js';
import { LeafbridgeError } from '../util/errors.js';
import { byCodeUnit } from '../util/order.js';
import type { LabelSelector } from './deviceStore.js';

type Requirement = { key: string; value: string; equal: boolean };

/** Parses the equality subset of a Kubernetes label selector (`a=b`, `a==b`, `a!=b`, comma-separated). */
export function parseSelector(selector: LabelSelector): Requirement[] {
  if (typeof selector !== 'string') {
    return Object.entries(selector).map(([key, value]) => ({ key, value, equal: true }));
  }
  return selector
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const m = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(part);
      if (!m) throw new LeafbridgeError('SELECTOR_INVALID', `unsupported label selector: ${part}`);
      return { key: m[1] as string, value: m[3] as string, equal: m[2] !== '!=' };
    });
}

export function matches(object: DeviceObject, requirements: readonly Requirement[]): boolean {
  const labels = object.metadata.labels ?? {};
  return requirements.every((r) => (labels[r.key] === r.value) === r.equal);
}

/** `objects` matching `selector`, sorted by name. */
export function select(objects: Iterable<DeviceObject>, selector?: LabelSelector): DeviceObject[] {
  const requirements = selector === undefined ? [] : parseSelector(selector);
  return [...objects]
    .filter((o) => matches(o, requirements))
    .sort((a, b) => byCodeUnit(a.metadata.name, b.metadata.name));
}
