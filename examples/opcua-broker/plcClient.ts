import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AttributeIds,
  type ClientSession,
  ClientSubscription,
  type DataValue,
  MessageSecurityMode,
  makeBrowsePath,
  type NodeId,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  UserTokenType,
} from 'node-opcua';
import type { Logger } from 'pino';
import type { NodeToRead, PlcSettings } from './settings.js';

/** One value change of a followed variable. */
export interface PlcValue {
  name: string;
  nodeId: string;
  value: unknown;
  status: string;
  sourceTimestamp: string | undefined;
}

export class PlcError extends Error {
  constructor(
    readonly code: 'OPCUA_NODES' | 'OPCUA_CONNECT',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A JSON-friendly value: numbers and strings as they are, 64-bit integers as strings, text by its text. */
export function plainValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'bigint') return value.toString();
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (Array.isArray(value) || ArrayBuffer.isView(value))
    return Array.from(value as ArrayLike<unknown>, plainValue);
  if (typeof value === 'object') {
    const v = value as { text?: unknown; toString(): string };
    return typeof v.text === 'string' ? v.text : v.toString();
  }
  return value;
}

/** The client's certificate store: PKI_DIR, or a temporary folder; never node-opcua's default under ~/.config. */
async function openPki(settings: PlcSettings) {
  const dir = settings.pkiDir ?? (await mkdtemp(join(tmpdir(), 'opcua-broker-pki-')));
  const manager = new OPCUACertificateManager({
    rootFolder: dir,
    automaticallyAcceptUnknownCertificate:
      settings.acceptUnknownCertificates || settings.securityMode === 'None',
    disableFileWatchers: true,
  });
  await manager.initialize();
  const dispose = async () => {
    await manager.dispose();
    if (!settings.pkiDir) await rm(dir, { recursive: true, force: true });
  };
  return { manager, dispose };
}

async function resolveNodes(
  session: ClientSession,
  nodes: NodeToRead[],
): Promise<Map<string, NodeId | string>> {
  const resolved = new Map<string, NodeId | string>();
  const paths = nodes.filter((n) => n.kind === 'browsePath');
  const results = await session.translateBrowsePath(paths.map((n) => makeBrowsePath('RootFolder', n.target)));
  const problems: string[] = [];
  paths.forEach((n, i) => {
    const target = results[i]?.targets?.[0]?.targetId;
    if (results[i]?.statusCode.isGood() && target) resolved.set(n.name, target);
    else problems.push(`${n.name}: ${results[i]?.statusCode.name ?? 'no result'} for ${n.target}`);
  });
  for (const n of nodes) if (n.kind === 'nodeId') resolved.set(n.name, n.target);
  if (problems.length > 0)
    throw new PlcError('OPCUA_NODES', `browse paths not found: ${problems.join('; ')}`);
  return resolved;
}

/**
 * Connects to the PLC, follows every variable of `settings.nodes` in one subscription and calls `onValue`
 * with each change. node-opcua keeps the session alive and, after a broken connection, reconnects (backing
 * off up to 10 s) and restores the subscription. Resolves with a function that closes everything.
 */
export async function followPlc(
  settings: PlcSettings,
  logger: Logger,
  onValue: (value: PlcValue) => void,
): Promise<() => Promise<void>> {
  const pki = await openPki(settings);
  const client = OPCUAClient.create({
    applicationName: 'leafbridge-opcua-broker',
    applicationUri: `urn:${hostname()}:leafbridge:opcua-broker`,
    clientCertificateManager: pki.manager,
    securityMode: MessageSecurityMode[settings.securityMode],
    securityPolicy:
      SecurityPolicy[settings.securityPolicy as keyof typeof SecurityPolicy] ?? SecurityPolicy.None,
    endpointMustExist: false,
    keepSessionAlive: true,
    connectionStrategy: { maxRetry: 100_000, initialDelay: 500, maxDelay: 10_000 },
  });
  client.on('backoff', (count, delay) =>
    logger.warn({ attempt: count, delay }, 'PLC not reachable; retrying'),
  );
  client.on('connection_lost', () => logger.warn('connection to the PLC lost'));
  client.on('connection_reestablished', () => logger.info('connection to the PLC re-established'));
  const close = async () => {
    await client.disconnect().catch(() => {});
    await pki.dispose().catch(() => {});
  };
  try {
    await client.connect(settings.endpointUrl);
    const session = await client.createSession(
      settings.user && { type: UserTokenType.UserName, ...settings.user },
    );
    const nodes = await resolveNodes(session, settings.nodes);
    await subscribe(session, nodes, settings.samplingIntervalMs, logger, onValue);
    logger.info(
      { nodes: Object.fromEntries([...nodes].map(([k, v]) => [k, v.toString()])) },
      'following values',
    );
  } catch (err) {
    await close();
    throw err instanceof PlcError
      ? err
      : new PlcError('OPCUA_CONNECT', (err as Error).message, { cause: err });
  }
  return close;
}

async function subscribe(
  session: ClientSession,
  nodes: Map<string, NodeId | string>,
  samplingIntervalMs: number,
  logger: Logger,
  onValue: (value: PlcValue) => void,
): Promise<void> {
  const subscription = ClientSubscription.create(session, {
    requestedPublishingInterval: samplingIntervalMs,
    requestedLifetimeCount: 100,
    requestedMaxKeepAliveCount: 10,
    maxNotificationsPerPublish: 1000,
    publishingEnabled: true,
  });
  subscription.on('status_changed', (status) =>
    logger.warn({ status: status.toString() }, 'subscription status'),
  );
  for (const [name, nodeId] of nodes) {
    const item = await subscription.monitor(
      { nodeId, attributeId: AttributeIds.Value },
      { samplingInterval: samplingIntervalMs, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    item.on('changed', (dataValue: DataValue) =>
      onValue({
        name,
        nodeId: nodeId.toString(),
        value: plainValue(dataValue.value?.value),
        status: dataValue.statusCode.name,
        sourceTimestamp: dataValue.sourceTimestamp?.toISOString(),
      }),
    );
    item.on('err', (message: string) => logger.error({ name, err: message }, 'monitored item failed'));
  }
}
