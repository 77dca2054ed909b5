import type { ApplicationDescription, EndpointDescription } from 'node-opcua';
import type { SecurityMode } from './detailsSchema.js';
import type { Opcua } from './opcuaModule.js';
import type { EndpointInfo, ServerApplication } from './types.js';

/** node-opcua structures → plain data; a field missing from a careless server becomes empty, not a crash. */
export function toApplication(a: ApplicationDescription): ServerApplication {
  return {
    applicationUri: a.applicationUri ?? '',
    applicationName: a.applicationName?.text ?? '',
    applicationType: Number(a.applicationType),
    discoveryUrls: (a.discoveryUrls ?? []).filter((u): u is string => typeof u === 'string'),
  };
}

export function toEndpoint(opcua: Opcua, e: EndpointDescription): EndpointInfo {
  const mode = opcua.MessageSecurityMode[e.securityMode] as SecurityMode | 'Invalid' | undefined;
  return {
    endpointUrl: e.endpointUrl ?? '',
    securityMode: mode ?? 'Invalid',
    securityPolicy: (e.securityPolicyUri ?? '').split('#').pop() ?? '',
    securityLevel: e.securityLevel ?? 0,
    transportProfileUri: e.transportProfileUri ?? '',
    ...(e.serverCertificate && e.serverCertificate.length > 0 && { serverCertificate: e.serverCertificate }),
  };
}

export function serverUriOf(e: EndpointDescription): string {
  return e.server?.applicationUri ?? '';
}
