import type { TSchema } from '@sinclair/typebox';
import { LeafbridgeError } from '../util/errors.js';

/** An OpenAPI v3 schema as a CRD holds it (apiextensions.k8s.io/v1 JSONSchemaProps, the parts leafbridge emits). */
export interface JsonSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  required?: string[];
  properties?: Record<string, JsonSchemaProps>;
  additionalProperties?: JsonSchemaProps;
  items?: JsonSchemaProps;
  anyOf?: JsonSchemaProps[];
  oneOf?: JsonSchemaProps[];
  allOf?: JsonSchemaProps[];
  not?: JsonSchemaProps;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  /** CEL rules the API server checks on this node (the message is what `kubectl` shows when one fails). */
  'x-kubernetes-validations'?: { rule: string; message?: string; fieldPath?: string }[];
}

/** Keywords that only constrain values; the only ones a structural schema allows under anyOf/oneOf/allOf/not. */
export const VALUE_KEYWORDS = [
  'enum',
  'format',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
] as const satisfies readonly (keyof JsonSchemaProps)[];

const X_KEYWORDS = [
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
] as const satisfies readonly (keyof JsonSchemaProps)[];

/** A TypeBox schema that cannot be said structurally; names the path so the schema's author can fix it. */
export class StructuralSchemaError extends LeafbridgeError {
  constructor(path: string, message: string) {
    super('SCHEMA_NOT_STRUCTURAL', `${path || '(root)'}: ${message}`);
  }
}

/** The JSON of a TypeBox schema (its symbols dropped), loosely typed for walking. */
type Json = Record<string, unknown>;

/**
 * A TypeBox schema as a structural OpenAPI v3 schema, the form a CRD needs
 * (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
 * every node typed; `additionalProperties: false` dropped (the API server prunes unknown fields instead);
 * `patternProperties` (TypeBox records) become `additionalProperties` (the key pattern is lost: OpenAPI v3
 * has no way to say it); unions of literals become `enum`; integer-or-string unions become
 * `x-kubernetes-int-or-string`; numeric `exclusiveMinimum` becomes OpenAPI 3.0's boolean form; `uniqueItems`
 * on scalar items becomes `x-kubernetes-list-type: set`; `errorMessage` and other TypeBox-only keys are dropped;
 * descriptions and defaults are kept. Anything else (mixed unions, `$ref`, `null`) throws, so a handler author
 * learns at test time rather than when a cluster refuses the CRD.
 */
export function toStructural(schema: TSchema, path = ''): JsonSchemaProps {
  return convert(JSON.parse(JSON.stringify(schema)) as Json, path);
}

function convert(s: Json, path: string): JsonSchemaProps {
  for (const k of ['$ref', 'allOf', 'oneOf', 'not', 'if', 'patternProperties'] as const) {
    if (k in s && !(k === 'patternProperties' && s.type === 'object')) {
      throw new StructuralSchemaError(path, `\`${k}\` has no structural form`);
    }
  }
  const out: JsonSchemaProps = annotations(s);
  if (Array.isArray(s.anyOf)) return { ...union(s.anyOf as Json[], path), ...out, ...values(s) };
  if (s.const !== undefined) return { type: scalarType(s, path), ...out, enum: [s.const] };
  if (s.type === undefined && Object.keys(out).length === Object.keys(s).length) {
    return { ...out, 'x-kubernetes-preserve-unknown-fields': true }; // Type.Unknown() / Type.Any()
  }
  switch (s.type) {
    case 'object':
      return { type: 'object', ...out, ...values(s), ...object(s, path), ...extensions(s) };
    case 'array':
      return array(s, out, path);
    case 'string':
    case 'integer':
    case 'number':
    case 'boolean':
      return { type: s.type, ...out, ...values(s), ...extensions(s) };
    default:
      throw new StructuralSchemaError(path, `type ${JSON.stringify(s.type)} has no structural form`);
  }
}

function annotations(s: Json): JsonSchemaProps {
  const out: JsonSchemaProps = {};
  if (typeof s.description === 'string') out.description = s.description;
  if (s.default !== undefined) out.default = structuredClone(s.default);
  return out;
}

/** Value validations of a node, with draft-2019 numeric exclusive bounds turned into OpenAPI 3.0's booleans. */
function values(s: Json): JsonSchemaProps {
  const out: Record<string, unknown> = {};
  for (const k of VALUE_KEYWORDS) if (s[k] !== undefined) out[k] = structuredClone(s[k]);
  for (const [bound, exclusive] of [
    ['minimum', 'exclusiveMinimum'],
    ['maximum', 'exclusiveMaximum'],
  ] as const) {
    if (typeof s[exclusive] === 'number') {
      out[bound] = s[exclusive];
      out[exclusive] = true;
    }
  }
  return out as JsonSchemaProps;
}

function extensions(s: Json): JsonSchemaProps {
  const out: Record<string, unknown> = {};
  for (const k of X_KEYWORDS) if (s[k] !== undefined) out[k] = structuredClone(s[k]);
  return out as JsonSchemaProps;
}

function object(s: Json, path: string): JsonSchemaProps {
  const pattern = s.patternProperties as Record<string, Json> | undefined;
  const props = s.properties as Record<string, Json> | undefined;
  if (pattern) {
    const entries = Object.values(pattern);
    if (entries.length !== 1 || props) {
      throw new StructuralSchemaError(path, 'a record must have exactly one key pattern and no properties');
    }
    const value = entries[0] as Json;
    if (Object.keys(value).length === 0) return { 'x-kubernetes-preserve-unknown-fields': true };
    return { additionalProperties: convert(value, `${path}.*`) };
  }
  if (!props) {
    if (s.additionalProperties === true) return { 'x-kubernetes-preserve-unknown-fields': true };
    if (typeof s.additionalProperties === 'object') {
      return { additionalProperties: convert(s.additionalProperties as Json, `${path}.*`) };
    }
    return {};
  }
  if (typeof s.additionalProperties === 'object') {
    throw new StructuralSchemaError(path, 'properties and additionalProperties cannot be combined');
  }
  const properties: Record<string, JsonSchemaProps> = {};
  for (const [k, v] of Object.entries(props)) properties[k] = convert(v, path ? `${path}.${k}` : k);
  const required = Array.isArray(s.required) && s.required.length > 0 ? [...(s.required as string[])] : [];
  // Fields beside the named ones allowed (an external handler's details): kept, not pruned.
  const open = s.additionalProperties === true ? { 'x-kubernetes-preserve-unknown-fields': true } : {};
  return { ...(required.length > 0 ? { required } : {}), properties, ...open };
}

function array(s: Json, out: JsonSchemaProps, path: string): JsonSchemaProps {
  if (typeof s.items !== 'object' || Array.isArray(s.items)) {
    throw new StructuralSchemaError(path, 'an array needs one items schema');
  }
  const items = convert(s.items as Json, `${path}[]`);
  const result: JsonSchemaProps = { type: 'array', ...out, ...values(s), items, ...extensions(s) };
  if (s.uniqueItems === true) {
    if (items.type === 'object' || items.type === 'array' || items.type === undefined) {
      throw new StructuralSchemaError(
        path,
        'uniqueItems needs scalar items (it becomes x-kubernetes-list-type: set)',
      );
    }
    result['x-kubernetes-list-type'] = 'set';
  }
  return result;
}

/** Literal unions become an enum; an integer-or-string union becomes x-kubernetes-int-or-string. */
function union(members: Json[], path: string): JsonSchemaProps {
  if (members.every((m) => m.const !== undefined)) {
    const types = new Set(members.map((m) => scalarType(m, path)));
    const [type] = types;
    if (types.size !== 1 || !type) throw new StructuralSchemaError(path, 'literals of mixed types');
    return { type, enum: members.map((m) => m.const) };
  }
  const byType = new Map(members.map((m) => [m.type, m]));
  if (members.length === 2 && byType.has('integer') && byType.has('string')) {
    const int = values(byType.get('integer') as Json);
    const str = values(byType.get('string') as Json);
    // pattern/length apply only to strings, bounds only to numbers, so both sets can sit on the node itself.
    return {
      'x-kubernetes-int-or-string': true,
      anyOf: [{ type: 'integer' }, { type: 'string' }],
      ...int,
      ...str,
    };
  }
  throw new StructuralSchemaError(
    path,
    'only unions of literals, or of integer and string, have a structural form',
  );
}

function scalarType(s: Json, path: string): 'string' | 'integer' | 'number' | 'boolean' {
  const t = s.type ?? typeof s.const;
  if (t === 'string' || t === 'integer' || t === 'number' || t === 'boolean') return t;
  throw new StructuralSchemaError(path, `a literal of type ${String(t)} has no structural form`);
}
