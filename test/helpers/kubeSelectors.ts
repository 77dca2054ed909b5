import { errors } from './kubeStatus.js';

/**
 * Label and field selectors, as the API server parses them
 * (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors,
 * https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/).
 */
export type Selector = (obj: { metadata?: { labels?: Record<string, string> } }) => boolean;

type Op = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | 'gt' | 'lt';
interface Requirement {
  key: string;
  op: Op;
  values: string[];
}

const KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** A label selector string as a predicate; throws a 400 KubeError for a malformed one. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  const reqs = splitTop(text ?? '').map(parseRequirement);
  return (obj) => {
    const labels = obj.metadata?.labels ?? {};
    return reqs.every((r) => matches(r, labels));
  };
}

function splitTop(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

function parseRequirement(text: string): Requirement {
  const bad = (why: string) =>
    errors.badRequest(`unable to parse requirement: ${why}: ${JSON.stringify(text)}`);
  let m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(text);
  if (m) {
    const values = m[3]!.split(',').map((v) => v.trim());
    return checked({ key: m[1]!, op: m[2] as Op, values }, bad);
  }
  m = /^(!?)\s*([^=!<>\s]+)$/.exec(text);
  if (m) return checked({ key: m[2]!, op: m[1] ? '!exists' : 'exists', values: [] }, bad);
  m = /^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)$/.exec(text);
  if (!m) throw bad('found unexpected token');
  const op: Op = m[2] === '!=' ? '!=' : m[2] === '>' ? 'gt' : m[2] === '<' ? 'lt' : '=';
  if ((op === 'gt' || op === 'lt') && !/^-?\d+$/.test(m[3]!))
    throw bad('for gt/lt the value must be an integer');
  return checked({ key: m[1]!, op, values: [m[3]!] }, bad);
}

function checked(r: Requirement, bad: (why: string) => Error): Requirement {
  if (!KEY.test(r.key)) throw bad(`invalid label key ${JSON.stringify(r.key)}`);
  if (r.op !== 'gt' && r.op !== 'lt') {
    for (const v of r.values) if (!VALUE.test(v)) throw bad(`invalid label value ${JSON.stringify(v)}`);
  }
  if ((r.op === 'in' || r.op === 'notin') && r.values.length === 0)
    throw bad('for in/notin at least one value is required');
  return r;
}

function matches(r: Requirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const v = labels[r.key];
  switch (r.op) {
    case 'exists':
      return has;
    case '!exists':
      return !has;
    case '=':
      return has && v === r.values[0];
    case '!=':
      return !has || v !== r.values[0];
    case 'in':
      return has && r.values.includes(v!);
    case 'notin':
      return !has || !r.values.includes(v!);
    case 'gt':
    case 'lt': {
      if (!has || !/^-?\d+$/.test(v!)) return false;
      const n = Number(v);
      const bound = Number(r.values[0]);
      return r.op === 'gt' ? n > bound : n < bound;
    }
  }
}

/**
 * A field selector as a predicate. Every resource supports metadata.name and metadata.namespace; `extra`
 * lists more dotted paths the resource allows (pods: spec.nodeName, status.phase). Unknown fields are a 400.
 */
export function parseFieldSelector(text: string | null | undefined, extra: readonly string[] = []): Selector {
  const allowed = ['metadata.name', 'metadata.namespace', ...extra];
  const reqs = splitTop(text ?? '').map((part) => {
    const m = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw errors.badRequest(`invalid selector: '${part}'; can't understand '${part}'`);
    if (!allowed.includes(m[1]!)) {
      throw errors.badRequest(`field label not supported: ${m[1]}`);
    }
    return { path: m[1]!.split('.'), negate: m[2] === '!=', value: m[3]!.trim() };
  });
  return (obj) =>
    reqs.every((r) => {
      let cur: unknown = obj;
      for (const p of r.path) cur = (cur as Record<string, unknown> | undefined)?.[p];
      const actual = cur === undefined || cur === null ? '' : String(cur);
      return r.negate ? actual !== r.value : actual === r.value;
    });
}
