import { isDeepStrictEqual } from 'node:util';
import type { DiscoveryHandler } from '../model/handler.js';
import { type JsonSchemaProps, StructuralSchemaError, toStructural, VALUE_KEYWORDS } from './structural.js';

/**
 * How each handler's `detailsSchema` reaches the CRD, so the API server itself rejects bad details.
 *
 * A structural schema cannot say "details has shape A when name is onvif, shape B when name is mqtt" the
 * obvious way (a `oneOf` of typed objects): under `oneOf`/`anyOf`/`allOf`/`not` it allows only value
 * validations, never `type`, `additionalProperties`, `default` or `description`, and every field named there
 * must also be declared outside. The other ways out are worse: `x-kubernetes-preserve-unknown-fields` plus
 * CEL rules re-states every constraint by hand, in a second language, under a cost budget (and CEL cannot
 * check a field's type at all); one spec field per handler (`spec.onvif`, `spec.mqtt`, ...) changes the
 * resource's shape away from the config file's `handler: {name, details}`.
 *
 * So the schema is split in two, both generated from the handlers' TypeBox schemas:
 * 1. `details` gets a skeleton: the union of every handler's fields with their types (the same field in
 *    two handlers must have the same type, else generation throws), each field's description marked with
 *    the handlers that use it, and every value validation the handlers agree on.
 * 2. `spec.handler` gets an `allOf` with one rule per handler, each an implication written as
 *    `anyOf: [{details: <rules>}, {name: {not: {enum: [<handler>]}}}]` ("this handler's rules, or another
 *    handler"). The rules: the handler's required fields, the value validations it does not share with the
 *    skeleton (e.g. `maxDevices` is at most 10000 for onvif, 100000 for mqtt), and `not: {}` on each field
 *    only other handlers have, which refuses that field by name. Not a `oneOf` over the handlers: when all
 *    branches fail, the API server reports the errors of the branch that matched most, often another
 *    handler's, and the message would blame the name; with the implication, the failing handler's own
 *    rules are listed first and are the ones reported
 *    (`spec.handler.details.interface: Required value`).
 *
 * What the API server then checks: the handler name; every details field's type, at any depth; required
 * fields; patterns, lengths, bounds, enums and item counts; fields of another handler. What it does not:
 * the key patterns of maps (e.g. mqtt `properties` keys must be environment names; OpenAPI v3 has no
 * `propertyNames`), and unknown fields, which it prunes rather than refuses (kubectl's default
 * `--validate=strict` does refuse them). Defaults under details are left out, because the skeleton is
 * shared (an onvif default would land in an mqtt config); the agent applies them at run time (`resolvedDetails`)
 * and reports anything the schema missed as the config's `Valid=False` condition.
 *
 * An external handler's details are free-form (`ExternalDetailsSchema`): its rule refuses no field, and
 * `details` then keeps unknown fields rather than pruning them (for every handler: a built-in handler's
 * stray field then reaches the agent, which reports it as `Valid=False`). The skeleton's types still hold
 * for it: a field a built-in handler also has must have that handler's type.
 */
export function foldHandlerDetails(
  handler: JsonSchemaProps,
  handlers: readonly DiscoveryHandler[],
): JsonSchemaProps {
  if (handlers.length === 0) return handler;
  const contribs = handlers.map((h) => ({
    name: h.name,
    schema: withoutDefaults(toStructural(h.detailsSchema, `${h.name}.details`)),
  }));
  for (const c of contribs) {
    if (c.schema.type !== 'object' || c.schema.additionalProperties) {
      throw new StructuralSchemaError(`${c.name}.details`, 'a handler details schema must be an object');
    }
  }
  const base = handler.properties?.details ?? {};
  const skeleton: JsonSchemaProps = {
    ...merge(contribs, 'details', 0),
    ...(base.description ? { description: base.description } : {}),
    default: {},
  };
  const name = handler.properties?.name ?? { type: 'string' };
  return {
    ...handler,
    properties: {
      ...handler.properties,
      name: { ...name, enum: handlers.map((h) => h.name) },
      details: skeleton,
    },
    allOf: contribs.flatMap((c) => rule(c, skeleton)),
  };
}

interface Contribution {
  name: string;
  schema: JsonSchemaProps;
}

/** The structural union of several handlers' schemas for one node; depth 0 is `details` itself. */
function merge(contribs: Contribution[], path: string, depth: number): JsonSchemaProps {
  const kinds = new Set(contribs.map((c) => kindOf(c.schema)));
  if (kinds.size > 1) {
    throw new StructuralSchemaError(
      path,
      `handlers ${contribs.map((c) => c.name).join(', ')} give it different types (${[...kinds].join(', ')})`,
    );
  }
  const first = contribs[0]!.schema;
  const out: JsonSchemaProps = {};
  if (first.type) out.type = first.type;
  const description = describe(contribs, depth === 1);
  if (description) out.description = description;
  for (const k of VALUE_KEYWORDS) {
    const v = first[k];
    if (v !== undefined && contribs.every((c) => isDeepStrictEqual(c.schema[k], v))) {
      (out as Record<string, unknown>)[k] = structuredClone(v);
    }
  }
  for (const k of ['x-kubernetes-int-or-string', 'anyOf'] as const) {
    if (first[k] !== undefined) (out as Record<string, unknown>)[k] = structuredClone(first[k]);
  }
  // Kept if one handler keeps unknown fields here (an external handler's free-form details).
  if (contribs.some((c) => c.schema['x-kubernetes-preserve-unknown-fields'])) {
    out['x-kubernetes-preserve-unknown-fields'] = true;
  }
  for (const k of [
    'x-kubernetes-list-type',
    'x-kubernetes-list-map-keys',
    'x-kubernetes-map-type',
  ] as const) {
    const v = first[k];
    if (!contribs.every((c) => isDeepStrictEqual(c.schema[k], v))) {
      throw new StructuralSchemaError(path, `handlers disagree on ${k}`);
    }
    if (v !== undefined) (out as Record<string, unknown>)[k] = structuredClone(v);
  }
  if (
    depth > 0 &&
    first.required &&
    contribs.every((c) => isDeepStrictEqual(c.schema.required, first.required))
  ) {
    out.required = [...first.required];
  }
  mergeChildren(contribs, path, depth + 1, out);
  return out;
}

function mergeChildren(contribs: Contribution[], path: string, depth: number, out: JsonSchemaProps): void {
  const keys = [...new Set(contribs.flatMap((c) => Object.keys(c.schema.properties ?? {})))];
  if (keys.length > 0) {
    out.properties = {};
    for (const k of keys) {
      const has = contribs.filter((c) => c.schema.properties?.[k]);
      out.properties[k] = merge(
        has.map((c) => ({ name: c.name, schema: c.schema.properties![k]! })),
        `${path}.${k}`,
        depth,
      );
    }
  }
  if (contribs.some((c) => c.schema.additionalProperties)) {
    if (!contribs.every((c) => c.schema.additionalProperties) || keys.length > 0) {
      throw new StructuralSchemaError(path, 'a map in one handler is an object with fields in another');
    }
    const values = contribs.map((c) => ({ name: c.name, schema: c.schema.additionalProperties! }));
    const merged = merge(values, `${path}.*`, depth);
    // Value validations under a junctor may not use additionalProperties, so map values must agree.
    if (values.some((v) => !isEmpty(residual(v.schema, merged)))) {
      throw new StructuralSchemaError(path, 'handlers constrain the values of this map differently');
    }
    out.additionalProperties = merged;
  }
  if (contribs.some((c) => c.schema.items)) {
    out.items = merge(
      contribs.map((c) => ({ name: c.name, schema: c.schema.items! })),
      `${path}[]`,
      depth,
    );
  }
}

/** The descriptions of a node; for a top-level details field, marked with the handlers that use it. */
function describe(contribs: Contribution[], marked: boolean): string | undefined {
  const groups = new Map<string, string[]>();
  for (const c of contribs) {
    const d = c.schema.description ?? '';
    groups.set(d, [...(groups.get(d) ?? []), c.name]);
  }
  if (!marked && groups.size === 1) return [...groups.keys()][0] || undefined;
  return [...groups].map(([d, names]) => `(${names.join(', ')})${d ? ` ${d}` : ''}`).join(' ');
}

function kindOf(s: JsonSchemaProps): string {
  if (s['x-kubernetes-int-or-string']) return 'int-or-string';
  if (s.type === 'object' && s.additionalProperties) return 'map';
  return s.type ?? 'any';
}

/** One handler's rule: unless `name` is another handler, its details must satisfy what the skeleton lacks. */
function rule(c: Contribution, skeleton: JsonSchemaProps): JsonSchemaProps[] {
  const details = residual(c.schema, skeleton);
  // Free-form details (an external handler's) may use any field, another handler's too.
  const foreign = c.schema['x-kubernetes-preserve-unknown-fields']
    ? []
    : Object.keys(skeleton.properties ?? {}).filter((k) => !c.schema.properties?.[k]);
  // `not: {}` fails for any value, so the error names the field: "details.interface: must not validate".
  for (const k of foreign) {
    details.properties ??= {};
    details.properties[k] = { not: {} };
  }
  if (isEmpty(details)) return [];
  return [{ anyOf: [{ properties: { details } }, { properties: { name: { not: { enum: [c.name] } } } }] }];
}

/** The value validations of `full` that `skeleton` lacks, as a junctor-safe schema (no type, description). */
function residual(full: JsonSchemaProps, skeleton: JsonSchemaProps): JsonSchemaProps {
  const out: JsonSchemaProps = {};
  for (const k of VALUE_KEYWORDS) {
    if (full[k] !== undefined && !isDeepStrictEqual(full[k], skeleton[k])) {
      (out as Record<string, unknown>)[k] = structuredClone(full[k]);
    }
  }
  if (full.required && !isDeepStrictEqual(full.required, skeleton.required))
    out.required = [...full.required];
  for (const [k, child] of Object.entries(full.properties ?? {})) {
    const r = residual(child, skeleton.properties?.[k] ?? {});
    if (isEmpty(r)) continue;
    out.properties ??= {};
    out.properties[k] = r;
  }
  if (full.items) {
    const r = residual(full.items, skeleton.items ?? {});
    if (!isEmpty(r)) out.items = r;
  }
  return out;
}

function isEmpty(s: JsonSchemaProps): boolean {
  return Object.keys(s).length === 0;
}

function withoutDefaults(s: JsonSchemaProps): JsonSchemaProps {
  const { default: _dropped, ...rest } = s;
  const out: JsonSchemaProps = { ...rest };
  if (s.properties) {
    out.properties = Object.fromEntries(
      Object.entries(s.properties).map(([k, v]) => [k, withoutDefaults(v)]),
    );
  }
  if (s.items) out.items = withoutDefaults(s.items);
  if (s.additionalProperties) out.additionalProperties = withoutDefaults(s.additionalProperties);
  return out;
}
