import { readFileSync } from 'node:fs';
import { join, normalize, resolve } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { parseDocument } from 'yaml';
import { ConfigError, errorMessage } from '../util/errors.js';
import { AgentConfigSchema, type RawAgentConfig } from './schema.js';
import { parseDuration, parseSize } from './size.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface UpstreamConfig {
  url: string;
  prefix: string;
  clientId: string;
  protocolVersion: 4 | 5;
  username?: string;
  password?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: boolean };
  keepaliveSeconds: number;
  inflight: number;
  reconnect: { minDelayMs: number; maxDelayMs: number };
  sessionExpirySeconds: number;
}

export interface ExternalHandlersConfig {
  handlers: string[];
  /** Where agent-registration.sock is served. */
  dir: string;
  firstListTimeoutMs: number;
  minListIntervalMs: number;
  maxDevices: number;
  maxMessageBytes: number;
}

/** A server's certificate and key files (absolute paths), re-read every `reloadIntervalMs`. */
export interface ServerTlsConfig {
  cert: string;
  key: string;
  reloadIntervalMs: number;
}

export interface BrokerTlsConfig extends ServerTlsConfig {
  listen: HostPort;
  clientCa?: string;
  clientCertificates: 'required' | 'optional';
  identityFrom: 'cn' | 'san-dns' | 'san-uri' | 'san-email';
}

export interface BrokerWebsocketConfig {
  listen: HostPort;
  path: string;
  tls: boolean;
}

/** The validated, normalised configuration: sizes in bytes, durations in milliseconds, files read. */
export interface AgentConfig {
  node: string;
  dataDir: string;
  logLevel: string;
  broker: {
    listen: HostPort;
    maxPacketSize: number;
    rateLimit: { messagesPerSecond: number; burst: number };
    refusalLogIntervalMs: number;
    core: boolean;
    tls?: BrokerTlsConfig;
    websocket?: BrokerWebsocketConfig;
  };
  http: {
    listen: HostPort;
    auth: { tokensFile?: string; anonymous: 'none' | 'read-only' | 'read-write'; cacheTtlMs: number };
    tls?: ServerTlsConfig;
  };
  upstream?: UpstreamConfig;
  outbox: { maxBytes: number; overflow: 'drop-oldest' | 'reject-new' };
  store: { synchronous: 'normal' | 'full' };
  commands: { ttlMs: number };
  auth: RawAgentConfig['auth'];
  devicePlugins: {
    dir: string;
    podResources: string;
    cdi: boolean;
    cdiDir: string;
    releaseIntervalMs: number;
    releaseGraceMs: number;
  };
  discovery: { gracePeriodMs: number; probeWritePaths: string[]; external: ExternalHandlersConfig };
  secrets: { dir: string };
  discoveryConfigs: RawAgentConfig['discoveryConfigs'];
  kubernetes: string;
}

/** Reads and validates a config file; throws ConfigError listing every problem by its path. */
export function loadConfigFile(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${path}: cannot read: ${errorMessage(err)}`]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${path}: ${e.message.split('\n')[0]}`));
  }
  return parseConfig(doc.toJS() ?? {}, resolve(path, '..'));
}

/**
 * Validates a config object (already parsed from YAML or JSON). `baseDir` resolves relative file paths. A
 * config without `node` takes `$NODE_NAME` (a DaemonSet sets it from the downward API's spec.nodeName).
 */
export function parseConfig(input: unknown, baseDir = process.cwd(), env = process.env): AgentConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError(['(root): must be a mapping of keys to values']);
  }
  const given = structuredClone(input) as Record<string, unknown>;
  if (given.node === undefined && env.NODE_NAME) given.node = env.NODE_NAME;
  const withDefaults = Value.Default(AgentConfigSchema, given);
  const problems = schemaProblems(withDefaults);
  if (problems.length > 0) throw new ConfigError(problems);
  const raw = withDefaults as RawAgentConfig;
  const semantic: string[] = [];
  const config = normalise(raw, baseDir, semantic);
  if (semantic.length > 0) throw new ConfigError(semantic);
  return config;
}

function schemaProblems(value: unknown): string[] {
  const seen = new Map<string, string>();
  for (const e of Value.Errors(AgentConfigSchema, value)) {
    const path = toDotted(e.path);
    // A union reports itself and each failed branch; keep the first message per path, or the schema's own.
    const custom = (e.schema as { errorMessage?: string }).errorMessage;
    if (seen.has(path) && !custom) continue;
    if ([...seen.keys()].some((p) => path.startsWith(`${p}.`) && seen.get(p)?.startsWith('!'))) continue;
    const text = custom ?? (e.message === 'Unexpected property' ? 'unknown key' : e.message.toLowerCase());
    seen.set(path, custom ? `!${text}` : text);
  }
  return [...seen].map(([path, text]) => `${path}: ${text.replace(/^!/, '')}`);
}

function toDotted(pointer: string): string {
  if (pointer === '') return '(root)';
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join('');
}

function normalise(raw: RawAgentConfig, baseDir: string, problems: string[]): AgentConfig {
  const orProblem = <T>(path: string, value: T | undefined, fallback: T, text: string): T => {
    if (value !== undefined) return value;
    problems.push(`${path}: ${text}`);
    return fallback;
  };
  const size = (path: string, v: string | number) => orProblem(path, parseSize(v), 0, 'bad size');
  const duration = (path: string, v: string | number) => orProblem(path, parseDuration(v), 0, 'bad duration');
  const listen = (path: string, v: string) =>
    orProblem(path, parseHostPort(v), { host: '', port: 0 }, 'port out of range');
  checkUniqueCredentials(raw.auth, problems);
  const serverTls = (path: string, tls: NonNullable<RawAgentConfig['http']['tls']>): ServerTlsConfig => ({
    cert: resolve(baseDir, tls.cert),
    key: resolve(baseDir, tls.key),
    reloadIntervalMs: Math.max(100, duration(`${path}.reloadInterval`, tls.reloadInterval)),
  });
  const brokerTls = raw.broker.tls;
  const websocket = raw.broker.websocket;
  if (websocket?.tls && !brokerTls)
    problems.push('broker.websocket.tls: needs broker.tls (its certificate and key)');
  return {
    node: raw.node,
    dataDir: resolve(baseDir, raw.dataDir),
    logLevel: raw.log.level,
    broker: {
      listen: listen('broker.listen', raw.broker.listen),
      maxPacketSize: size('broker.maxPacketSize', raw.broker.maxPacketSize),
      rateLimit: raw.broker.rateLimit,
      refusalLogIntervalMs: duration('broker.refusalLogInterval', raw.broker.refusalLogInterval),
      core: raw.broker.core,
      ...(brokerTls
        ? {
            tls: {
              ...serverTls('broker.tls', brokerTls),
              listen: listen('broker.tls.listen', brokerTls.listen),
              ...(brokerTls.clientCa ? { clientCa: resolve(baseDir, brokerTls.clientCa) } : {}),
              clientCertificates: brokerTls.clientCertificates,
              identityFrom: brokerTls.identityFrom,
            },
          }
        : {}),
      ...(websocket
        ? {
            websocket: {
              listen: listen('broker.websocket.listen', websocket.listen),
              path: websocket.path,
              tls: websocket.tls,
            },
          }
        : {}),
    },
    http: {
      listen: listen('http.listen', raw.http.listen),
      auth: {
        ...(raw.http.auth.tokensFile ? { tokensFile: resolve(baseDir, raw.http.auth.tokensFile) } : {}),
        anonymous: raw.http.auth.anonymous,
        cacheTtlMs: duration('http.auth.cacheTtl', raw.http.auth.cacheTtl),
      },
      ...(raw.http.tls ? { tls: serverTls('http.tls', raw.http.tls) } : {}),
    },
    ...(raw.upstream ? { upstream: normaliseUpstream(raw, baseDir, problems, duration) } : {}),
    outbox: { maxBytes: size('outbox.maxBytes', raw.outbox.maxBytes), overflow: raw.outbox.overflow },
    store: raw.store,
    commands: { ttlMs: duration('commands.ttl', raw.commands.ttl) },
    auth: {
      ...raw.auth,
      ...(raw.auth.credentialsFile ? { credentialsFile: resolve(baseDir, raw.auth.credentialsFile) } : {}),
    },
    devicePlugins: {
      dir: resolve(baseDir, raw.devicePlugins.dir),
      podResources: resolve(baseDir, raw.devicePlugins.podResources),
      cdi: raw.devicePlugins.cdi,
      cdiDir: resolve(baseDir, raw.devicePlugins.cdiDir),
      releaseIntervalMs: duration('devicePlugins.releaseInterval', raw.devicePlugins.releaseInterval),
      releaseGraceMs: duration('devicePlugins.releaseGrace', raw.devicePlugins.releaseGrace),
    },
    discovery: {
      gracePeriodMs: duration('discovery.gracePeriod', raw.discovery.gracePeriod),
      probeWritePaths: raw.discovery.probeWritePaths.map((p) => normalize(p)),
      external: normaliseExternal(raw.discovery.external, resolve(baseDir, raw.dataDir), duration, size),
    },
    secrets: { dir: resolve(baseDir, raw.secrets.dir) },
    discoveryConfigs: raw.discoveryConfigs,
    kubernetes: raw.kubernetes,
  };
}

function normaliseExternal(
  raw: RawAgentConfig['discovery']['external'],
  dataDir: string,
  duration: (path: string, v: string | number) => number,
  size: (path: string, v: string | number) => number,
): ExternalHandlersConfig {
  const at = 'discovery.external';
  return {
    handlers: [...new Set(raw.handlers)],
    dir: raw.dir ? normalize(raw.dir) : join(dataDir, 'akri'),
    firstListTimeoutMs: duration(`${at}.firstListTimeout`, raw.firstListTimeout),
    minListIntervalMs: duration(`${at}.minListInterval`, raw.minListInterval),
    maxDevices: raw.maxDevices,
    maxMessageBytes: size(`${at}.maxMessageSize`, raw.maxMessageSize),
  };
}

function normaliseUpstream(
  raw: RawAgentConfig,
  baseDir: string,
  problems: string[],
  duration: (path: string, v: string | number) => number,
): UpstreamConfig {
  const up = raw.upstream!;
  const file = (path: string, name: string | undefined): Buffer | undefined => {
    if (name === undefined) return undefined;
    try {
      return readFileSync(resolve(baseDir, name));
    } catch (err) {
      problems.push(`${path}: cannot read ${name}: ${errorMessage(err)}`);
      return undefined;
    }
  };
  if (up.password !== undefined && up.passwordFile !== undefined) {
    problems.push('upstream.passwordFile: give password or passwordFile, not both');
  }
  const url = new URL(up.url);
  const portText = url.port;
  if (portText && Number(portText) > 65535) problems.push('upstream.url: port out of range');
  if ((up.tls?.cert === undefined) !== (up.tls?.key === undefined)) {
    problems.push('upstream.tls: cert and key go together');
  }
  const passwordFromFile = file('upstream.passwordFile', up.passwordFile)?.toString('utf8').trim();
  const password = up.password ?? passwordFromFile;
  const tls = up.tls && {
    ca: file('upstream.tls.ca', up.tls.ca),
    cert: file('upstream.tls.cert', up.tls.cert),
    key: file('upstream.tls.key', up.tls.key),
    rejectUnauthorized: up.tls.rejectUnauthorized,
  };
  return {
    url: up.url,
    prefix: up.prefix,
    clientId: up.clientId ?? `leafbridge-${raw.node}`,
    protocolVersion: up.protocolVersion,
    ...(up.username === undefined ? {} : { username: up.username }),
    ...(password === undefined ? {} : { password }),
    ...(tls ? { tls } : {}),
    keepaliveSeconds: Math.max(1, Math.round(duration('upstream.keepalive', up.keepalive) / 1000)),
    inflight: up.inflight,
    reconnect: {
      minDelayMs: duration('upstream.reconnect.minDelay', up.reconnect.minDelay),
      maxDelayMs: duration('upstream.reconnect.maxDelay', up.reconnect.maxDelay),
    },
    sessionExpirySeconds: Math.round(duration('upstream.sessionExpiry', up.sessionExpiry) / 1000),
  };
}

/** Device ids and usernames are unique across devices and users; a problem per duplicate. */
export function checkUniqueCredentials(
  auth: Pick<RawAgentConfig['auth'], 'devices' | 'users'>,
  problems: string[],
  where = 'auth',
): void {
  const usernames = new Map<string, string>();
  const ids = new Set<string>();
  auth.devices.forEach((d, i) => {
    if (ids.has(d.id)) problems.push(`${where}.devices[${i}].id: duplicate device id ${d.id}`);
    ids.add(d.id);
    const name = d.username ?? d.id;
    if (usernames.has(name))
      problems.push(`${where}.devices[${i}].username: ${name} is already used by ${usernames.get(name)}`);
    usernames.set(name, `${where}.devices[${i}]`);
  });
  auth.users.forEach((u, i) => {
    if (usernames.has(u.username)) {
      problems.push(
        `${where}.users[${i}].username: ${u.username} is already used by ${usernames.get(u.username)}`,
      );
    }
    usernames.set(u.username, `${where}.users[${i}]`);
  });
}

export function parseHostPort(text: string): HostPort | undefined {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? '', port };
}
