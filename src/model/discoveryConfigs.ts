import { Value } from '@sinclair/typebox/value';
import type { DiscoveryConfigEntry } from '../config/schema.js';
import type { DiscoveryHandler } from './handler.js';
import { API_VERSION, type DiscoveryConfigObject } from './resources.js';

/** Problems with each config's handler name and details, by path; empty when all are valid. */
export function discoveryConfigProblems(
  entries: readonly DiscoveryConfigEntry[],
  handlers: readonly DiscoveryHandler[],
  path = 'discoveryConfigs',
): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  entries.forEach((entry, i) => {
    const at = `${path}[${i}]`;
    if (names.has(entry.name)) problems.push(`${at}.name: duplicate config name ${entry.name}`);
    names.add(entry.name);
    const handler = handlers.find((h) => h.name === entry.spec.handler.name);
    if (!handler) {
      problems.push(
        `${at}.spec.handler.name: unknown handler ${entry.spec.handler.name} (known: ${handlers.map((h) => h.name).join(', ')})`,
      );
      return;
    }
    problems.push(
      ...detailsProblems(handler, entry.spec.handler.details).map((p) => `${at}.spec.handler.details${p}`),
    );
  });
  return problems;
}

/** The handler's schema applied to `details`, with defaults; each problem starts with its `.path`. */
export function detailsProblems(handler: DiscoveryHandler, details: unknown): string[] {
  const value = Value.Default(handler.detailsSchema, structuredClone(details ?? {}));
  const out = new Map<string, string>();
  for (const e of Value.Errors(handler.detailsSchema, value)) {
    const path = e.path.replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.');
    const custom = (e.schema as { errorMessage?: string }).errorMessage;
    if (!out.has(path))
      out.set(
        path,
        custom ?? (e.message === 'Unexpected property' ? 'unknown key' : e.message.toLowerCase()),
      );
  }
  return [...[...out].map(([p, m]) => `${p}: ${m}`), ...inlineSecrets(value, '')];
}

/**
 * Inline passwords are refused: the object would carry them to every reader (kubectl get -o yaml, the API,
 * backups). The schema keeps the field (older objects still load) so the refusal can say what to use.
 */
function inlineSecrets(value: unknown, path: string): string[] {
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const at = path ? `${path}.${k}` : `.${k}`;
    if (k === 'password' && typeof v === 'string' && v !== '')
      return [`${at}: ${inlineSecretRefusal('password')}`];
    return inlineSecrets(v, at);
  });
}

/** Why an inline secret field is refused, naming the reference to give instead (the agent and the CRD say it). */
export function inlineSecretRefusal(field: string): string {
  return `an inline ${field} is refused; give ${field}SecretRef: {name, key} (docs/security.md)`;
}

/** Details with the handler schema's defaults filled in. */
export function resolvedDetails(handler: DiscoveryHandler, details: unknown): unknown {
  return Value.Default(handler.detailsSchema, structuredClone(details ?? {}));
}

export function toConfigObject(entry: DiscoveryConfigEntry, namespace: string): DiscoveryConfigObject {
  return {
    apiVersion: API_VERSION,
    kind: 'DiscoveryConfig',
    metadata: { name: entry.name, namespace },
    spec: { handler: entry.spec.handler, capacity: entry.spec.capacity, properties: entry.spec.properties },
    status: { conditions: [], devices: 0 },
  };
}
