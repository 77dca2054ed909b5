import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '../../src/util/errors.js';
import { normalizeUuid } from './filters.js';
import { type BoundInterface, resolveInterface } from './networkInterface.js';
import {
  type OnvifCredentials,
  type OnvifDetails,
  OnvifDetailsSchema,
  type OnvifFilters,
  onvifDefaults,
} from './schema.js';
import type { Credentials } from './soapEnvelope.js';

/** Details with every default applied and the interface resolved. */
export interface OnvifOptions {
  bound: BoundInterface;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  soapTimeoutMs: number;
  maxResponseBytes: number;
  maxDevices: number;
  maxConcurrentQueries: number;
  filters: OnvifFilters | undefined;
  credentialsFor: (camera: { uuid: string; ipAddress: string | undefined }) => Credentials | undefined;
}

/** Checks details against the schema (every problem with its path) and fills in the defaults. */
export function resolveOptions(details: OnvifDetails): OnvifOptions {
  const problems = [...Value.Errors(OnvifDetailsSchema, details)].map(
    (e) => `details${e.path.replaceAll('/', '.')}: ${e.message}`,
  );
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    bound: resolveInterface(details.interface),
    probeIntervalMs: details.probeIntervalMs ?? onvifDefaults.probeIntervalMs,
    probeTimeoutMs: details.probeTimeoutMs ?? onvifDefaults.probeTimeoutMs,
    soapTimeoutMs: details.soapTimeoutMs ?? onvifDefaults.soapTimeoutMs,
    maxResponseBytes: details.maxResponseBytes ?? onvifDefaults.maxResponseBytes,
    maxDevices: details.maxDevices ?? onvifDefaults.maxDevices,
    maxConcurrentQueries: onvifDefaults.maxConcurrentQueries,
    filters: details.filters,
    credentialsFor: credentialLookup(details.credentials),
  };
}

function credentialLookup(config: OnvifDetails['credentials']): OnvifOptions['credentialsFor'] {
  // A passwordSecretRef was read into password by the agent before discovery started.
  const plain = (c: OnvifCredentials): Credentials => ({ username: c.username, password: c.password ?? '' });
  const byKey = new Map<string, Credentials>();
  for (const [key, value] of Object.entries(config?.devices ?? {}))
    byKey.set(normalizeUuid(key), plain(value));
  const fallback = config?.default && plain(config.default);
  return ({ uuid, ipAddress }) =>
    byKey.get(normalizeUuid(uuid)) ?? (ipAddress ? byKey.get(ipAddress) : undefined) ?? fallback;
}
