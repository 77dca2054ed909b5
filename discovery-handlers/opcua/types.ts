import type { DeviceCondition } from '../../src/model/handler.js';
import type { SecurityMode } from './detailsSchema.js';

/** A server as FindServers describes it, in plain data. */
export interface ServerApplication {
  applicationUri: string;
  applicationName: string;
  /** Part 4 ApplicationType: 0 Server, 1 Client, 2 ClientAndServer, 3 DiscoveryServer. */
  applicationType: number;
  discoveryUrls: string[];
}

/** An endpoint as GetEndpoints describes it, in plain data. */
export interface EndpointInfo {
  endpointUrl: string;
  securityMode: SecurityMode | 'Invalid';
  /** Short name: the part of the policy URI after `#`. */
  securityPolicy: string;
  securityLevel: number;
  transportProfileUri: string;
  serverCertificate?: Buffer;
}

/** What one scan learnt about one server. */
export interface FoundServer {
  /** The configured discovery URL through which it was found. */
  discoveryUrl: string;
  /** The URL its endpoints were read from (and that is watched). */
  serverUrl: string;
  application: ServerApplication;
  endpoint?: EndpointInfo;
  /** Browse-path values by browse-path name. */
  values: Record<string, string>;
  conditions: DeviceCondition[];
}
