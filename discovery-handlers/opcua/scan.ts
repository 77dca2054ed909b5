import type { EndpointDescription } from 'node-opcua';
import type { DeviceCondition } from '../../src/model/handler.js';
import { readBrowsePaths } from './browsePaths.js';
import { NO_SECURITY, withClient } from './connection.js';
import { serverUriOf, toApplication, toEndpoint } from './convert.js';
import { SecurityMode } from './detailsSchema.js';
import type { OpcuaEnv } from './env.js';
import { oneLine } from './failureLog.js';
import { selectEndpoint, wantedApplication } from './filter.js';
import type { EndpointInfo, FoundServer, ServerApplication } from './types.js';

interface DiscoveryAnswer {
  applications: ServerApplication[];
  /** GetEndpoints of the server we asked: a plain server's own endpoints, no second connection needed. */
  endpoints: EndpointDescription[];
}

const FIND_SERVERS_FAILED = 'OPC UA FindServers failed';
const GET_ENDPOINTS_FAILED = 'OPC UA GetEndpoints failed';

/** The servers behind one discovery URL. Never throws: each failure is logged and left out. */
export async function scanDiscoveryUrl(env: OpcuaEnv, discoveryUrl: string): Promise<FoundServer[]> {
  let answer: DiscoveryAnswer;
  try {
    answer = await withClient(env, discoveryUrl, NO_SECURITY, async (client) => ({
      applications: (await client.findServers()).map(toApplication),
      endpoints: await client.getEndpoints(),
    }));
  } catch (err) {
    if (!env.signal.aborted) env.failures.fail(discoveryUrl, FIND_SERVERS_FAILED, err);
    return [];
  }
  env.failures.ok(discoveryUrl, FIND_SERVERS_FAILED);
  const nameless = answer.applications.filter((app) => app.applicationUri === '').length;
  if (nameless > 0)
    env.logger.warn(
      { url: discoveryUrl, nameless },
      'FindServers listed servers without an applicationUri; ignored',
    );
  const wanted = answer.applications.filter((app) => wantedApplication(env.settings, app));
  const found = await Promise.all(
    wanted.map((app) => {
      const own = answer.endpoints.filter((e) => serverUriOf(e) === app.applicationUri);
      return describeServer(env, discoveryUrl, app, own);
    }),
  );
  return found.filter((f): f is FoundServer => f !== undefined);
}

/** Endpoints, the selected endpoint, its certificate's trust, and the browse-path values of one server. */
async function describeServer(
  env: OpcuaEnv,
  discoveryUrl: string,
  app: ServerApplication,
  ownEndpoints: EndpointDescription[],
): Promise<FoundServer | undefined> {
  const fetched =
    ownEndpoints.length > 0
      ? { serverUrl: discoveryUrl, endpoints: ownEndpoints }
      : await fetchEndpoints(env, app);
  if (!fetched) return undefined;
  const found: FoundServer = {
    discoveryUrl,
    serverUrl: fetched.serverUrl,
    application: app,
    values: {},
    conditions: [],
  };
  const choice = selectEndpoint(
    fetched.endpoints.map((e) => toEndpoint(env.opcua, e)),
    env.settings,
  );
  if ('condition' in choice) {
    found.conditions.push(choice.condition);
    return found;
  }
  found.endpoint = choice.endpoint;
  const untrusted = await trustCondition(env, choice.endpoint);
  if (untrusted) found.conditions.push(untrusted);
  else if (env.settings.browsePaths.length > 0) {
    const read = await readBrowsePaths(env, choice.endpoint);
    found.values = read.values;
    found.conditions.push(...read.conditions);
  }
  return found;
}

/** A server found through a discovery server: ask it for its endpoints at its own discovery URLs, in turn. */
async function fetchEndpoints(
  env: OpcuaEnv,
  app: ServerApplication,
): Promise<{ serverUrl: string; endpoints: EndpointDescription[] } | undefined> {
  const urls = app.discoveryUrls.filter((u) => u.startsWith('opc.tcp://'));
  if (urls.length === 0) env.logger.warn({ applicationUri: app.applicationUri }, 'server has no opc.tcp URL');
  for (const url of urls) {
    try {
      const endpoints = await withClient(env, url, NO_SECURITY, (client) => client.getEndpoints());
      env.failures.ok(url, GET_ENDPOINTS_FAILED);
      const own = endpoints.filter((e) => serverUriOf(e) === app.applicationUri);
      return { serverUrl: url, endpoints: own.length > 0 ? own : endpoints };
    } catch (err) {
      if (env.signal.aborted) return undefined;
      env.failures.fail(url, GET_ENDPOINTS_FAILED, err);
    }
  }
  return undefined;
}

/** With security, the server certificate must be trusted (or trusted now, when unknown ones are accepted). */
async function trustCondition(env: OpcuaEnv, endpoint: EndpointInfo): Promise<DeviceCondition | undefined> {
  if (endpoint.securityMode === SecurityMode.None) return undefined;
  const condition = (reason: string, message: string): DeviceCondition => ({
    type: 'ServerCertificateTrusted',
    status: 'False',
    reason,
    message,
  });
  if (!endpoint.serverCertificate)
    return condition('NoCertificate', 'the endpoint carries no server certificate');
  try {
    const status = await env.pki.certificateManager.checkCertificate(endpoint.serverCertificate);
    if (status.isGood()) return undefined;
    return condition(
      status.name,
      `server certificate not trusted (${status.name}); add it to trustedCertificates`,
    );
  } catch (err) {
    return condition('CheckFailed', oneLine(err));
  }
}
