import {
  type BrowsePath,
  type NameFilter,
  type OpcuaDetails,
  SecurityMode,
  SecurityPolicy,
} from './detailsSchema.js';
import { browsePathProperty, Property } from './devices.js';

/** The details with every default filled in: what the rest of the handler reads. */
export interface OpcuaSettings {
  discoveryUrls: string[];
  applicationNames?: NameFilter;
  applicationUris?: NameFilter;
  securityMode: SecurityMode;
  securityPolicy: SecurityPolicy;
  pkiDir?: string;
  trustedCertificates: string[];
  automaticallyAcceptUnknownCertificates: boolean;
  browsePaths: BrowsePath[];
  pollIntervalMs: number;
  watchConnections: boolean;
  keepAliveIntervalMs: number;
  connectTimeoutMs: number;
  maxDevices: number;
}

export const DEFAULTS = {
  /** One poll is one connection with FindServers and GetEndpoints (bench: docs/performance.md). */
  pollIntervalMs: 1_000,
  keepAliveIntervalMs: 5_000,
  connectTimeoutMs: 3_000,
  maxDevices: 100,
} as const;

export function resolveSettings(details: OpcuaDetails): OpcuaSettings {
  const securityMode = details.securityMode ?? SecurityMode.None;
  return {
    discoveryUrls: [...new Set(details.discoveryUrls)],
    ...(details.applicationNames && { applicationNames: details.applicationNames }),
    ...(details.applicationUris && { applicationUris: details.applicationUris }),
    securityMode,
    securityPolicy: details.securityPolicy ?? SecurityPolicy.None,
    ...(details.pkiDir !== undefined && { pkiDir: details.pkiDir }),
    trustedCertificates: details.trustedCertificates ?? [],
    automaticallyAcceptUnknownCertificates:
      details.automaticallyAcceptUnknownCertificates ?? securityMode === SecurityMode.None,
    browsePaths: details.browsePaths ?? [],
    pollIntervalMs: details.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
    watchConnections: details.watchConnections ?? true,
    keepAliveIntervalMs: details.keepAliveIntervalMs ?? DEFAULTS.keepAliveIntervalMs,
    connectTimeoutMs: details.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    maxDevices: details.maxDevices ?? DEFAULTS.maxDevices,
  };
}

/**
 * Problems the schema cannot express, each with its path: a securityMode and securityPolicy that cannot go
 * together, browse paths whose names give the same property or a built-in one.
 */
export function settingsProblems(settings: OpcuaSettings): string[] {
  return [...securityProblems(settings), ...browsePathProblems(settings.browsePaths)];
}

function securityProblems(settings: OpcuaSettings): string[] {
  const noneMode = settings.securityMode === SecurityMode.None;
  const nonePolicy = settings.securityPolicy === SecurityPolicy.None;
  if (noneMode === nonePolicy) return [];
  const wanted = noneMode ? 'securityPolicy None' : 'a securityPolicy other than None';
  return [`securityPolicy: securityMode ${settings.securityMode} needs ${wanted}`];
}

function browsePathProblems(paths: readonly BrowsePath[]): string[] {
  const builtIn = new Set<string>(Object.values(Property));
  const seen = new Map<string, string>();
  return paths.flatMap((p, i) => {
    const property = browsePathProperty(p.name);
    const other = seen.get(property);
    seen.set(property, p.name);
    if (builtIn.has(property)) return [`browsePaths[${i}].name: ${p.name} would overwrite ${property}`];
    if (other !== undefined) return [`browsePaths[${i}].name: ${p.name} gives ${property}, as ${other} does`];
    return [];
  });
}
