import {
  type CameraModel,
  deviceServiceUrl,
  gatewayOf,
  imagingServiceUrl,
  mediaServiceUrl,
} from './model.js';
import { el, ns } from './soap.js';
import type { XmlElement } from './xml.js';

/** One SOAP operation: takes the request Body, returns the response Body's content. */
export type Operation = (model: CameraModel, request: XmlElement | undefined) => string;

function systemDateAndTime(_model: CameraModel): string {
  const now = new Date();
  const utc =
    `<tt:UTCDateTime><tt:Time>${el('tt:Hour', now.getUTCHours())}${el('tt:Minute', now.getUTCMinutes())}` +
    `${el('tt:Second', now.getUTCSeconds())}</tt:Time><tt:Date>${el('tt:Year', now.getUTCFullYear())}` +
    `${el('tt:Month', now.getUTCMonth() + 1)}${el('tt:Day', now.getUTCDate())}</tt:Date></tt:UTCDateTime>`;
  return (
    '<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>' +
    `${el('tt:DateTimeType', 'Manual')}${el('tt:DaylightSavings', false)}<tt:TimeZone>${el('tt:TZ', 'UTC0')}</tt:TimeZone>` +
    `${utc}</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`
  );
}

function deviceInformation(model: CameraModel): string {
  return (
    '<tds:GetDeviceInformationResponse>' +
    el('tds:Manufacturer', model.manufacturer) +
    el('tds:Model', model.model) +
    el('tds:FirmwareVersion', model.firmwareVersion) +
    el('tds:SerialNumber', model.serialNumber) +
    el('tds:HardwareId', model.hardwareId) +
    '</tds:GetDeviceInformationResponse>'
  );
}

function capabilities(model: CameraModel): string {
  return (
    '<tds:GetCapabilitiesResponse><tds:Capabilities>' +
    `<tt:Device>${el('tt:XAddr', deviceServiceUrl(model))}</tt:Device>` +
    `<tt:Media>${el('tt:XAddr', mediaServiceUrl(model))}<tt:StreamingCapabilities>` +
    `${el('tt:RTPMulticast', false)}${el('tt:RTP_TCP', true)}${el('tt:RTP_RTSP_TCP', true)}` +
    '</tt:StreamingCapabilities></tt:Media>' +
    `<tt:Imaging>${el('tt:XAddr', imagingServiceUrl(model))}</tt:Imaging>` +
    '</tds:Capabilities></tds:GetCapabilitiesResponse>'
  );
}

function service(namespace: string, xaddr: string, major: number, minor: number): string {
  return (
    `<tds:Service>${el('tds:Namespace', namespace)}${el('tds:XAddr', xaddr)}` +
    `<tds:Version>${el('tt:Major', major)}${el('tt:Minor', minor)}</tds:Version></tds:Service>`
  );
}

function services(model: CameraModel): string {
  return (
    '<tds:GetServicesResponse>' +
    service(ns.tds, deviceServiceUrl(model), 2, 60) +
    service(ns.trt, mediaServiceUrl(model), 2, 60) +
    service(ns.timg, imagingServiceUrl(model), 2, 60) +
    '</tds:GetServicesResponse>'
  );
}

function networkInterfaces(model: CameraModel): string {
  return (
    '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">' +
    el('tt:Enabled', true) +
    `<tt:Info>${el('tt:Name', 'eth0')}${el('tt:HwAddress', model.macAddress)}${el('tt:MTU', 1500)}</tt:Info>` +
    `<tt:IPv4>${el('tt:Enabled', true)}<tt:Config><tt:Manual>${el('tt:Address', model.address)}` +
    `${el('tt:PrefixLength', 24)}</tt:Manual>${el('tt:DHCP', false)}</tt:Config></tt:IPv4>` +
    '</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>'
  );
}

/** One IPv4 server address, as GetDNS and GetNTP report it. */
const manualServer = (tag: string, address: string) =>
  `<tt:${tag}>${el('tt:Type', 'IPv4')}${el('tt:IPv4Address', address)}</tt:${tag}>`;

function defaultGateway(model: CameraModel): string {
  return `<tds:GetNetworkDefaultGatewayResponse><tds:NetworkGateway>${el('tt:IPv4Address', gatewayOf(model.address))}</tds:NetworkGateway></tds:GetNetworkDefaultGatewayResponse>`;
}

function dns(model: CameraModel): string {
  return `<tds:GetDNSResponse><tds:DNSInformation>${el('tt:FromDHCP', false)}${manualServer('DNSManual', gatewayOf(model.address))}</tds:DNSInformation></tds:GetDNSResponse>`;
}

function ntp(model: CameraModel): string {
  return `<tds:GetNTPResponse><tds:NTPInformation>${el('tt:FromDHCP', false)}${manualServer('NTPManual', gatewayOf(model.address))}</tds:NTPInformation></tds:GetNTPResponse>`;
}

function networkProtocols(model: CameraModel): string {
  const protocol = (name: string, port: number) =>
    `<tds:NetworkProtocols>${el('tt:Name', name)}${el('tt:Enabled', true)}${el('tt:Port', port)}</tds:NetworkProtocols>`;
  const rtspPort = Number(new URL(model.streamUri('x')).port || 554);
  return `<tds:GetNetworkProtocolsResponse>${protocol('HTTP', model.port)}${protocol('RTSP', rtspPort)}</tds:GetNetworkProtocolsResponse>`;
}

function hostname(model: CameraModel): string {
  return `<tds:GetHostnameResponse><tds:HostnameInformation>${el('tt:FromDHCP', false)}${el('tt:Name', model.hostname)}</tds:HostnameInformation></tds:GetHostnameResponse>`;
}

function scopes(model: CameraModel): string {
  const items = model.scopes.map(
    (s) => `<tds:Scopes>${el('tt:ScopeDef', 'Fixed')}${el('tt:ScopeItem', s)}</tds:Scopes>`,
  );
  return `<tds:GetScopesResponse>${items.join('')}</tds:GetScopesResponse>`;
}

/** The device service. Only the PRE_AUTH operations (below) are allowed without credentials. */
export const deviceOperations: Record<string, Operation> = {
  GetSystemDateAndTime: systemDateAndTime,
  GetDeviceInformation: deviceInformation,
  GetCapabilities: capabilities,
  GetServices: services,
  GetNetworkInterfaces: networkInterfaces,
  GetNetworkDefaultGateway: defaultGateway,
  GetDNS: dns,
  GetNTP: ntp,
  GetNetworkProtocols: networkProtocols,
  GetHostname: hostname,
  GetScopes: scopes,
};

/**
 * ONVIF Core's PRE_AUTH access class: "the service shall not require user authentication". Clients rely on
 * it (the `onvif` npm client's connect() reads GetServices or GetCapabilities before it has checked the clock).
 */
export const unauthenticatedOperations: ReadonlySet<string> = new Set([
  'GetSystemDateAndTime',
  'GetServices',
  'GetServiceCapabilities',
  'GetCapabilities',
  'GetHostname',
  'GetWsdlUrl',
  'GetEndpointReference',
]);
