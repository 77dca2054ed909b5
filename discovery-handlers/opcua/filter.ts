import type { DeviceCondition } from '../../src/model/handler.js';
import type { NameFilter } from './detailsSchema.js';
import type { OpcuaSettings } from './settings.js';
import type { EndpointInfo, ServerApplication } from './types.js';

export const ApplicationType = { Server: 0, Client: 1, ClientAndServer: 2, DiscoveryServer: 3 } as const;

export const UA_TCP_BINARY = 'http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary';

/** No filter keeps everything; `include` keeps the listed values, `exclude` drops them. */
export function passesFilter(filter: NameFilter | undefined, value: string): boolean {
  if (!filter) return true;
  const listed = filter.items.includes(value);
  return filter.action === 'include' ? listed : !listed;
}

/** Servers only (a discovery server lists itself too), and only those the name and URI filters let through. */
export function wantedApplication(
  settings: Pick<OpcuaSettings, 'applicationNames' | 'applicationUris'>,
  app: ServerApplication,
): boolean {
  const isServer =
    app.applicationType === ApplicationType.Server || app.applicationType === ApplicationType.ClientAndServer;
  return (
    isServer &&
    app.applicationUri !== '' &&
    passesFilter(settings.applicationNames, app.applicationName) &&
    passesFilter(settings.applicationUris, app.applicationUri)
  );
}

export type EndpointChoice = { endpoint: EndpointInfo } | { condition: DeviceCondition };

/** The opc.tcp endpoint with the wanted mode and policy and the highest security level, or why there is none. */
export function selectEndpoint(
  endpoints: readonly EndpointInfo[],
  wanted: Pick<OpcuaSettings, 'securityMode' | 'securityPolicy'>,
): EndpointChoice {
  const tcp = endpoints.filter(
    (e) => e.transportProfileUri === UA_TCP_BINARY || e.endpointUrl.startsWith('opc.tcp://'),
  );
  const matching = tcp
    .filter((e) => e.securityMode === wanted.securityMode && e.securityPolicy === wanted.securityPolicy)
    .sort((a, b) => b.securityLevel - a.securityLevel);
  const best = matching[0];
  if (best) return { endpoint: best };
  const offered = [...new Set(tcp.map((e) => `${e.securityMode}/${e.securityPolicy}`))];
  return {
    condition: {
      type: 'EndpointSelected',
      status: 'False',
      reason: offered.length === 0 ? 'NoEndpoints' : 'NoMatchingEndpoint',
      message:
        `wanted ${wanted.securityMode}/${wanted.securityPolicy}; ` +
        (offered.length === 0
          ? 'the server offers no opc.tcp endpoint'
          : `the server offers ${offered.join(', ')}`),
    },
  };
}
