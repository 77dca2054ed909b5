import { isDeepStrictEqual } from 'node:util';
import type { JsonSchemaProps } from '../../src/install/structural.js';

/**
 * What the API server does with a CRD's OpenAPI v3 schema, for the test API server and the CRD tests:
 * the structural-schema rules it checks when the CRD is created, and pruning, defaulting and validation of
 * each object written. Written to the documented behaviour
 * (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/) and,
 * for messages, to what kube-openapi's validator says. CEL rules (x-kubernetes-validations) are not run.
 */

export type Schema = JsonSchemaProps & {
  nullable?: boolean;
  title?: string;
  'x-kubernetes-validations'?: unknown;
};

/** One field error, as the API server reports it in a Status's details.causes. */
export interface FieldError {
  reason:
    | 'FieldValueRequired'
    | 'FieldValueInvalid'
    | 'FieldValueNotSupported'
    | 'FieldValueTypeInvalid'
    | 'FieldValueDuplicate'
    | 'FieldValueForbidden';
  field: string;
  message: string;
}

// ---------------------------------------------------------------------------------------------- structural

const JUNCTORS = ['allOf', 'anyOf', 'oneOf'] as const;
const FORBIDDEN_IN_JUNCTOR = [
  'type',
  'additionalProperties',
  'default',
  'title',
  'description',
  'nullable',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-list-type',
  'x-kubernetes-map-type',
  'x-kubernetes-validations',
] as const;

/** Why `schema` is not a structural schema the API server would accept for a CRD; empty when it is. */
export function structuralProblems(schema: Schema): string[] {
  const problems: string[] = [];
  if (schema.type !== 'object') problems.push('(root).type: must be object at the root');
  if (schema.additionalProperties) problems.push('(root).additionalProperties: must not be used at the root');
  const meta = schema.properties?.metadata;
  if (meta) {
    const extra = Object.keys(meta.properties ?? {}).filter((k) => k !== 'name' && k !== 'generateName');
    const other = Object.keys(meta).filter((k) => k !== 'type' && k !== 'properties');
    if (meta.type !== 'object' || extra.length > 0 || other.length > 0) {
      problems.push('properties.metadata: must not specify anything other than name and generateName');
    }
  }
  checkNode(schema, '', 'root', problems);
  return problems;
}

function checkNode(s: Schema, path: string, level: 'root' | 'field' | 'item', problems: string[]): void {
  const at = path || '(root)';
  if (
    !s.type &&
    !s['x-kubernetes-preserve-unknown-fields'] &&
    !s['x-kubernetes-int-or-string'] &&
    level !== 'root'
  ) {
    problems.push(
      `${at}.type: must not be empty for specified ${level === 'item' ? 'array items' : 'object fields'}`,
    );
  }
  if (s.type === 'array' && !s.items) problems.push(`${at}.items: must be specified`);
  if (s.properties && s.additionalProperties) {
    problems.push(`${at}.additionalProperties: additionalProperties and properties are mutual exclusive`);
  }
  if ((s as { uniqueItems?: boolean }).uniqueItems) problems.push(`${at}.uniqueItems: cannot be set to true`);
  if (s.default !== undefined && path.startsWith('.metadata'))
    problems.push(`${at}.default: forbidden in metadata`);
  if (s.pattern !== undefined) {
    try {
      new RegExp(s.pattern);
    } catch (e) {
      problems.push(`${at}.pattern: must be a valid regular expression: ${(e as Error).message}`);
    }
  }
  if (s['x-kubernetes-list-type'] === 'map' && !s['x-kubernetes-list-map-keys']?.length) {
    problems.push(`${at}.x-kubernetes-list-map-keys: must not be empty if x-kubernetes-list-type is map`);
  }
  if (s['x-kubernetes-list-type'] === 'set' && (s.items?.type === 'object' || s.items?.type === 'array')) {
    problems.push(`${at}.items: a set needs scalar (or atomic) items`);
  }
  for (const [k, v] of Object.entries(s.properties ?? {}))
    checkNode(v, `${path}.properties.${k}`, 'field', problems);
  if (s.items) checkNode(s.items, `${path}.items`, 'item', problems);
  if (s.additionalProperties)
    checkNode(s.additionalProperties, `${path}.additionalProperties`, 'field', problems);
  const intOrString =
    s['x-kubernetes-int-or-string'] && isDeepStrictEqual(s.anyOf, [{ type: 'integer' }, { type: 'string' }]);
  for (const j of JUNCTORS) {
    if (j === 'anyOf' && intOrString) continue;
    (s[j] ?? []).forEach((sub, i) => {
      checkNested(sub, s, `${path}.${j}[${i}]`, problems);
    });
  }
  if (s.not) checkNested(s.not, s, `${path}.not`, problems);
}

/** A schema under a junctor: value validations only, and only of fields the outer schema specifies. */
function checkNested(n: Schema, outer: Schema, path: string, problems: string[]): void {
  for (const k of FORBIDDEN_IN_JUNCTOR) {
    if (n[k as keyof Schema] !== undefined) problems.push(`${path}.${k}: must be empty to be structural`);
  }
  if (n.properties?.metadata)
    problems.push(`${path}.properties.metadata: must not be specified in a nested context`);
  for (const [k, v] of Object.entries(n.properties ?? {})) {
    const o = outer.properties?.[k] ?? outer.additionalProperties;
    if (!o) problems.push(`${path}.properties.${k}: must be specified outside the junctor too`);
    checkNested(v, o ?? {}, `${path}.properties.${k}`, problems);
  }
  if (n.items) {
    if (!outer.items) problems.push(`${path}.items: must be specified outside the junctor too`);
    checkNested(n.items, outer.items ?? {}, `${path}.items`, problems);
  }
  for (const j of JUNCTORS)
    (n[j] ?? []).forEach((sub, i) => {
      checkNested(sub, outer, `${path}.${j}[${i}]`, problems);
    });
  if (n.not) checkNested(n.not, outer, `${path}.not`, problems);
}

// ------------------------------------------------------------------------------------ pruning, defaulting

/** Drops fields the schema does not specify (in place); returns their paths. `metadata` is left alone. */
export function prune(schema: Schema, value: unknown, path = ''): string[] {
  const pruned: string[] = [];
  if (!isObject(value)) {
    if (Array.isArray(value) && schema.items)
      value.forEach((v, i) => {
        pruned.push(...prune(schema.items!, v, `${path}[${i}]`));
      });
    return pruned;
  }
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  for (const key of Object.keys(value)) {
    const at = path ? `${path}.${key}` : key;
    if (!path && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue;
    const child = schema.properties?.[key] ?? schema.additionalProperties;
    if (child) pruned.push(...prune(child, value[key], schema.properties?.[key] ? at : `${path}[${key}]`));
    else if (!preserve) {
      delete value[key];
      pruned.push(at);
    }
  }
  return pruned;
}

/** Fills in defaults of missing (or null, non-nullable) fields, in place, from the outside in. */
export function applyDefaults(schema: Schema, value: unknown): void {
  if (Array.isArray(value)) {
    if (schema.items) for (const v of value) applyDefaults(schema.items, v);
    return;
  }
  if (!isObject(value)) return;
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    if (
      child.default !== undefined &&
      (value[key] === undefined || (value[key] === null && !(child as Schema).nullable))
    ) {
      value[key] = structuredClone(child.default);
    }
    if (value[key] !== undefined) applyDefaults(child, value[key]);
  }
  if (schema.additionalProperties) {
    for (const key of Object.keys(value))
      if (!schema.properties?.[key]) applyDefaults(schema.additionalProperties, value[key]);
  }
}

// -------------------------------------------------------------------------------------------- validation

/** The field errors of `value` against `schema`, with kube-openapi's wording. */
export function validate(schema: Schema, value: unknown, path = ''): FieldError[] {
  const r = new Result();
  check(schema, value, path, r);
  return r.errs;
}

/**
 * Errors, and how much matched: for a failed anyOf/oneOf, kube-openapi reports the errors of the branch
 * with the most successful checks (its MatchCount), the first one on a tie. Here a node counts as a match
 * when it and everything under it validate.
 */
class Result {
  readonly errs: FieldError[] = [];
  matches = 0;
  push(...e: FieldError[]): void {
    this.errs.push(...e);
  }
}

function check(s: Schema, v: unknown, path: string, errs: Result): void {
  const before = errs.errs.length;
  checkValue(s, v, path, errs);
  if (errs.errs.length === before) errs.matches++;
}

function checkValue(s: Schema, v: unknown, path: string, errs: Result): void {
  const at = path || '<root>';
  if (v === null) {
    if (!s.nullable && s.type) errs.push(typeError(at, v, s.type));
    return;
  }
  if (!typeOk(s, v)) {
    errs.push(typeError(at, v, s['x-kubernetes-int-or-string'] ? 'integer-or-string' : s.type!));
    return;
  }
  if (s.enum && !s.enum.some((e) => isDeepStrictEqual(e, v))) {
    errs.push({
      reason: 'FieldValueNotSupported',
      field: at,
      message: `Unsupported value: ${JSON.stringify(v)}: supported values: ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`,
    });
  }
  if (typeof v === 'string') checkString(s, v, at, errs);
  if (typeof v === 'number') checkNumber(s, v, at, errs);
  if (Array.isArray(v)) checkArray(s, v, path, errs);
  if (isObject(v)) checkObject(s, v, path, errs);
  checkJunctors(s, v, path, errs);
}

function typeOk(s: Schema, v: unknown): boolean {
  if (s['x-kubernetes-int-or-string']) return typeof v === 'string' || Number.isInteger(v);
  switch (s.type) {
    case undefined:
      return true;
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
    case 'integer':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number';
    default:
      return typeof v === s.type;
  }
}

function typeError(at: string, v: unknown, type: string): FieldError {
  const actual =
    v === null
      ? 'null'
      : Array.isArray(v)
        ? 'array'
        : typeof v === 'number' && !Number.isInteger(v)
          ? 'number'
          : typeof v;
  return {
    reason: 'FieldValueTypeInvalid',
    field: at,
    message: `Invalid value: ${JSON.stringify(actual)}: ${at} in body must be of type ${type}: ${JSON.stringify(actual)}`,
  };
}

function invalid(at: string, v: unknown, detail: string): FieldError {
  const shown = isObject(v) ? '"object"' : Array.isArray(v) ? '"array"' : JSON.stringify(v);
  return { reason: 'FieldValueInvalid', field: at, message: `Invalid value: ${shown}: ${detail}` };
}

function checkString(s: Schema, v: string, at: string, errs: Result): void {
  const length = [...v].length;
  if (s.minLength !== undefined && length < s.minLength)
    errs.push(invalid(at, v, `${at} in body should be at least ${s.minLength} chars long`));
  if (s.maxLength !== undefined && length > s.maxLength)
    errs.push(invalid(at, v, `${at} in body should be at most ${s.maxLength} chars long`));
  if (s.pattern !== undefined && !new RegExp(s.pattern).test(v))
    errs.push(invalid(at, v, `${at} in body should match '${s.pattern}'`));
  if (
    s.format === 'date-time' &&
    !/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(v)
  ) {
    errs.push(invalid(at, v, `${at} in body must be of type date-time: ${JSON.stringify(v)}`));
  }
}

function checkNumber(s: Schema, v: number, at: string, errs: Result): void {
  if (s.minimum !== undefined && (s.exclusiveMinimum ? v <= s.minimum : v < s.minimum)) {
    errs.push(
      invalid(
        at,
        v,
        `${at} in body should be greater than ${s.exclusiveMinimum ? '' : 'or equal to '}${s.minimum}`,
      ),
    );
  }
  if (s.maximum !== undefined && (s.exclusiveMaximum ? v >= s.maximum : v > s.maximum)) {
    errs.push(
      invalid(
        at,
        v,
        `${at} in body should be less than ${s.exclusiveMaximum ? '' : 'or equal to '}${s.maximum}`,
      ),
    );
  }
  if (s.multipleOf !== undefined && v % s.multipleOf !== 0)
    errs.push(invalid(at, v, `${at} in body should be a multiple of ${s.multipleOf}`));
}

function checkArray(s: Schema, v: unknown[], path: string, errs: Result): void {
  const at = path || '<root>';
  if (s.minItems !== undefined && v.length < s.minItems)
    errs.push(invalid(at, v, `${at} in body should have at least ${s.minItems} items`));
  if (s.maxItems !== undefined && v.length > s.maxItems)
    errs.push({
      reason: 'FieldValueInvalid',
      field: at,
      message: `Too many: ${v.length}: must have at most ${s.maxItems} items`,
    });
  const listType = s['x-kubernetes-list-type'];
  if (listType === 'set' || listType === 'map') {
    const keyOf = (item: unknown) =>
      listType === 'set'
        ? JSON.stringify(item)
        : JSON.stringify(
            (s['x-kubernetes-list-map-keys'] ?? []).map((k) => (item as Record<string, unknown>)?.[k]),
          );
    const seen = new Set<string>();
    v.forEach((item, i) => {
      const key = keyOf(item);
      if (seen.has(key))
        errs.push({
          reason: 'FieldValueDuplicate',
          field: `${path}[${i}]`,
          message: `Duplicate value: ${key}`,
        });
      seen.add(key);
    });
  }
  if (s.items) {
    v.forEach((item, i) => {
      check(s.items!, item, `${path}[${i}]`, errs);
    });
  }
}

function checkObject(s: Schema, v: Record<string, unknown>, path: string, errs: Result): void {
  const at = path || '<root>';
  const n = Object.keys(v).length;
  if (s.minProperties !== undefined && n < s.minProperties)
    errs.push(invalid(at, v, `${at} in body should have at least ${s.minProperties} properties`));
  if (s.maxProperties !== undefined && n > s.maxProperties)
    errs.push(invalid(at, v, `${at} in body should have at most ${s.maxProperties} properties`));
  for (const r of s.required ?? []) {
    if (v[r] !== undefined) errs.matches++;
    else
      errs.push({
        reason: 'FieldValueRequired',
        field: path ? `${path}.${r}` : r,
        message: 'Required value',
      });
  }
  for (const [k, child] of Object.entries(v)) {
    const p = s.properties?.[k];
    if (p) check(p, child, path ? `${path}.${k}` : k, errs);
    else if (s.additionalProperties) check(s.additionalProperties, child, `${path}[${k}]`, errs);
  }
}

/** allOf, anyOf, oneOf, not; for a failed anyOf/oneOf the branch with the fewest errors is reported too. */
function checkJunctors(s: Schema, v: unknown, path: string, errs: Result): void {
  const at = path || '<root>';
  for (const sub of s.allOf ?? []) check(sub, v, path, errs);
  const intOrString =
    s['x-kubernetes-int-or-string'] && isDeepStrictEqual(s.anyOf, [{ type: 'integer' }, { type: 'string' }]);
  const tries = (subs: Schema[]) =>
    subs.map((sub) => {
      const r = new Result();
      check(sub, v, path, r);
      return r;
    });
  if (s.anyOf && !intOrString) {
    const results = tries(s.anyOf);
    if (!results.some((r) => r.errs.length === 0)) {
      errs.push(invalid(at, v, 'must validate at least one schema (anyOf)'), ...best(results));
    }
  }
  if (s.oneOf) {
    const results = tries(s.oneOf);
    const valid = results.filter((r) => r.errs.length === 0).length;
    if (valid === 0)
      errs.push(
        invalid(at, v, 'must validate one and only one schema (oneOf). Found none valid'),
        ...best(results),
      );
    if (valid > 1)
      errs.push(
        invalid(at, v, `must validate one and only one schema (oneOf). Found ${valid} valid alternatives`),
      );
  }
  if (s.not && validate(s.not, v, path).length === 0)
    errs.push(invalid(at, v, 'must not validate the schema (not)'));
}

function best(results: Result[]): FieldError[] {
  return results.reduce((a, b) => (b.matches > a.matches ? b : a)).errs;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
