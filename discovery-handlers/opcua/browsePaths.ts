import type { ClientSession, NodeId } from 'node-opcua';
import type { DeviceCondition } from '../../src/model/handler.js';
import { withClient } from './connection.js';
import type { BrowsePath } from './detailsSchema.js';
import type { OpcuaEnv } from './env.js';
import { oneLine } from './failureLog.js';
import type { Opcua } from './opcuaModule.js';
import type { EndpointInfo } from './types.js';

export interface BrowsePathValues {
  values: Record<string, string>;
  conditions: DeviceCondition[];
}

const CONDITION = 'BrowsePathsRead';
const SESSION_FAILED = 'OPC UA session for browse paths failed';

/** Opens an anonymous session on the selected endpoint and reads every browse path; failures become a condition. */
export async function readBrowsePaths(env: OpcuaEnv, endpoint: EndpointInfo): Promise<BrowsePathValues> {
  const security = {
    mode: endpoint.securityMode === 'Invalid' ? 'None' : endpoint.securityMode,
    policy: endpoint.securityPolicy,
    ...(endpoint.serverCertificate && { serverCertificate: endpoint.serverCertificate }),
  } as const;
  try {
    const read = await withClient(env, endpoint.endpointUrl, security, async (client) => {
      const session = await client.createSession();
      try {
        return await readInSession(env.opcua, session, env.settings.browsePaths);
      } finally {
        await session.close().catch(() => {});
      }
    });
    env.failures.ok(endpoint.endpointUrl, SESSION_FAILED);
    return read;
  } catch (err) {
    if (!env.signal.aborted) env.failures.fail(endpoint.endpointUrl, SESSION_FAILED, err);
    const message = `session on ${endpoint.endpointUrl} failed: ${oneLine(err)}`;
    return {
      values: {},
      conditions: [{ type: CONDITION, status: 'False', reason: 'SessionFailed', message }],
    };
  }
}

async function readInSession(
  opcua: Opcua,
  session: ClientSession,
  paths: readonly BrowsePath[],
): Promise<BrowsePathValues> {
  const problems: string[] = [];
  const resolved = await resolvePaths(opcua, session, paths, problems);
  const values: Record<string, string> = {};
  if (resolved.length > 0) {
    const read = await session.read(
      resolved.map((r) => ({ nodeId: r.nodeId, attributeId: opcua.AttributeIds.Value })),
    );
    read.forEach((dataValue, i) => {
      const name = resolved[i]?.name ?? '';
      if (dataValue.statusCode.isGood()) values[name] = variantToString(dataValue.value?.value);
      else problems.push(`${name}: ${dataValue.statusCode.name}`);
    });
  }
  const conditions: DeviceCondition[] =
    problems.length === 0
      ? []
      : [{ type: CONDITION, status: 'False', reason: 'BrowsePathNotRead', message: problems.join('; ') }];
  return { values, conditions };
}

async function resolvePaths(
  opcua: Opcua,
  session: ClientSession,
  paths: readonly BrowsePath[],
  problems: string[],
): Promise<{ name: string; nodeId: NodeId }[]> {
  const parsed = paths.flatMap((p) => {
    try {
      return [{ name: p.name, path: p.path, browsePath: opcua.makeBrowsePath('RootFolder', p.path) }];
    } catch (err) {
      problems.push(`${p.name}: invalid path ${JSON.stringify(p.path)} (${oneLine(err)})`);
      return [];
    }
  });
  if (parsed.length === 0) return [];
  const results = await session.translateBrowsePath(parsed.map((p) => p.browsePath));
  return parsed.flatMap((p, i) => {
    const result = results[i];
    const nodeId = result?.targets?.[0]?.targetId;
    if (result?.statusCode.isGood() && nodeId) return [{ name: p.name, nodeId }];
    problems.push(`${p.name}: ${result?.statusCode.name ?? 'no result'} for ${p.path}`);
    return [];
  });
}

/** A property is a string: dates in ISO form, bytes in base64, localized text by its text, arrays as JSON. */
export function variantToString(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    return JSON.stringify(Array.from(value as ArrayLike<unknown>, variantToString));
  }
  if (typeof value === 'object') {
    const v = value as { text?: unknown; name?: unknown };
    if (typeof v.text === 'string') return v.text;
    if (typeof v.name === 'string') return v.name;
  }
  return String(value);
}
