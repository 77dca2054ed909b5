import { type Static, Type } from '@sinclair/typebox';
import { LeafbridgeError } from './errors.js';

/**
 * Names as Kubernetes allows Secrets and their keys: no `/`; a key is not `.` or `..` and does not start with `..`
 * (Kubernetes' own rule for data keys), so `secrets.dir/NAME/KEY` cannot leave its directory. No lookahead: the
 * pattern goes into the CRD, and the API server's regular expressions (RE2) have none.
 */
const SECRET_NAME = '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$';
const SECRET_KEY = '^\\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$';

const SecretKeyRefSchema = Type.Object(
  {
    name: Type.String({
      pattern: SECRET_NAME,
      description: "the Secret, in the agent's namespace (standalone: a directory under secrets.dir)",
    }),
    key: Type.String({
      pattern: SECRET_KEY,
      maxLength: 253,
      description: 'the key in it (standalone: a file in that directory)',
    }),
  },
  { additionalProperties: false },
);
export type SecretKeyRef = Static<typeof SecretKeyRefSchema>;

/**
 * `<field>SecretRef: {name, key}` beside a secret field: the agent reads the value from that Secret
 * (standalone: the file secrets.dir/NAME/KEY) when the handler starts, and the handler sees `<field>`; the
 * value is never stored in the DiscoveryConfig, a Device or a log.
 */
export const secretRefField = (field: string) =>
  Type.Optional(
    Type.Object(SecretKeyRefSchema.properties, {
      additionalProperties: false,
      description: `${field} from a Secret (preferred to an inline ${field}, which every reader of the object sees).`,
    }),
  );

export type SecretReader = (ref: SecretKeyRef) => Promise<string>;

const SUFFIX = 'SecretRef';

function isRef(value: unknown): value is SecretKeyRef {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const { name, key } = value as { name?: unknown; key?: unknown };
  return typeof name === 'string' && typeof key === 'string';
}

/**
 * A copy of handler details with each `<field>SecretRef` replaced by `<field>` holding the secret's value.
 * Throws a LeafbridgeError (`SECRET_CONFLICT`) when both are given; the reader's errors pass through.
 */
export async function resolveSecretRefs(details: unknown, read: SecretReader): Promise<unknown> {
  if (Array.isArray(details)) return Promise.all(details.map((d) => resolveSecretRefs(d, read)));
  if (details === null || typeof details !== 'object') return details;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(details)) {
    if (k.endsWith(SUFFIX) && k.length > SUFFIX.length && isRef(v)) {
      const field = k.slice(0, -SUFFIX.length);
      if (field in details) throw new LeafbridgeError('SECRET_CONFLICT', `give ${field} or ${k}, not both`);
      out[field] = await read(v);
    } else out[k] = await resolveSecretRefs(v, read);
  }
  return out;
}
