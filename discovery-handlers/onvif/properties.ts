import type { DeviceCondition, DiscoveredDevice } from '../../src/model/handler.js';
import { OnvifErrorCode as Code, type OnvifErrorCode } from './errors.js';
import { normalizeMac } from './filters.js';

/**
 * The properties an ONVIF camera hands to pods (as environment variables). The first four are known from
 * WS-Discovery alone, so a camera whose credentials are wrong still has them; the rest need the camera's
 * device and media services.
 */
export const OnvifProperty = {
  /** Device service URL from the camera's XAddrs, e.g. http://192.168.1.20/onvif/device_service. */
  deviceServiceUrl: 'ONVIF_DEVICE_SERVICE_URL',
  /** The camera's endpoint uuid, bare (no urn:uuid:, uuid: or braces), lower case (also the device id). */
  uuid: 'ONVIF_DEVICE_UUID',
  /** IPv4 address (the host of the device service URL). */
  ipAddress: 'ONVIF_DEVICE_IP_ADDRESS',
  /** WS-Discovery scopes, space-separated. */
  scopes: 'ONVIF_SCOPES',
  /** MAC address of the interface carrying that IP, aa:bb:cc:dd:ee:ff. */
  macAddress: 'ONVIF_DEVICE_MAC_ADDRESS',
  manufacturer: 'ONVIF_MANUFACTURER',
  model: 'ONVIF_MODEL',
  serialNumber: 'ONVIF_SERIAL_NUMBER',
  firmwareVersion: 'ONVIF_FIRMWARE_VERSION',
  hardwareId: 'ONVIF_HARDWARE_ID',
  mediaServiceUrl: 'ONVIF_MEDIA_SERVICE_URL',
  /** Media profile tokens, comma-separated, in the camera's order. */
  profiles: 'ONVIF_PROFILES',
  /** Prefix: ONVIF_STREAM_URI_<profile token in upper snake case> = the profile's RTSP URI. */
  streamUriPrefix: 'ONVIF_STREAM_URI_',
} as const;

export const OnvifCondition = {
  /** False when the camera refused the credentials (or asked for some and none were configured). */
  authenticated: 'Authenticated',
  /** False when the camera's SOAP services could not be read: timeout, oversized or hostile reply, fault. */
  queried: 'Queried',
} as const;

/** What WS-Discovery told us about a camera. */
export interface CameraTarget {
  /** Normalized uuid: the device id. */
  id: string;
  /** The id versions before the `uuid:` and brace forms were normalized gave it, when different. */
  formerId?: string;
  deviceServiceUrl: string;
  ipAddress: string | undefined;
  scopes: string[];
}

export interface CameraFacts {
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  serialNumber?: string;
  hardwareId?: string;
  macAddress?: string;
  mediaServiceUrl?: string;
  profiles: { token: string; name: string }[];
  streamUris: Map<string, string>;
}

export interface QueryFailure {
  code: OnvifErrorCode;
  message: string;
  /** The error itself, for the log. */
  error?: unknown;
}

const maxValueLength = 2_048;

/** `main.Stream-1` → `MAIN_STREAM_1`; `mainStream` → `MAIN_STREAM`. */
export function upperSnake(token: string): string {
  return token
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .toUpperCase();
}

function set(properties: Record<string, string>, name: string, value: string | undefined): void {
  if (value !== undefined && value !== '') properties[name] = value.slice(0, maxValueLength);
}

function streamProperties(facts: CameraFacts, properties: Record<string, string>): void {
  const used = new Set<string>();
  for (const { token } of facts.profiles) {
    const uri = facts.streamUris.get(token);
    if (!uri) continue;
    let name = `${OnvifProperty.streamUriPrefix}${upperSnake(token) || 'PROFILE'}`;
    for (let n = 2; used.has(name); n++) name = `${OnvifProperty.streamUriPrefix}${upperSnake(token)}_${n}`;
    used.add(name);
    set(properties, name, uri);
  }
}

export function formatMac(value: string): string {
  const hex = normalizeMac(value);
  return hex.length === 12 ? (hex.match(/../g) ?? []).join(':') : value;
}

export function buildProperties(target: CameraTarget, facts: CameraFacts): Record<string, string> {
  const properties: Record<string, string> = {};
  set(properties, OnvifProperty.deviceServiceUrl, target.deviceServiceUrl);
  set(properties, OnvifProperty.uuid, target.id);
  set(properties, OnvifProperty.ipAddress, target.ipAddress);
  set(properties, OnvifProperty.scopes, target.scopes.join(' '));
  set(properties, OnvifProperty.macAddress, facts.macAddress && formatMac(facts.macAddress));
  set(properties, OnvifProperty.manufacturer, facts.manufacturer);
  set(properties, OnvifProperty.model, facts.model);
  set(properties, OnvifProperty.serialNumber, facts.serialNumber);
  set(properties, OnvifProperty.firmwareVersion, facts.firmwareVersion);
  set(properties, OnvifProperty.hardwareId, facts.hardwareId);
  set(properties, OnvifProperty.mediaServiceUrl, facts.mediaServiceUrl);
  set(properties, OnvifProperty.profiles, facts.profiles.map((p) => p.token).join(','));
  streamProperties(facts, properties);
  return properties;
}

export function failureCondition(failure: QueryFailure): DeviceCondition {
  const auth = failure.code === Code.notAuthorized;
  return {
    type: auth ? OnvifCondition.authenticated : OnvifCondition.queried,
    status: 'False',
    reason: failure.code,
    message: failure.message.slice(0, 1_000),
  };
}

export function buildDevice(
  target: CameraTarget,
  facts: CameraFacts,
  failure?: QueryFailure,
): DiscoveredDevice {
  const device: DiscoveredDevice = {
    id: target.id,
    ...(target.formerId !== undefined && { formerIds: [target.formerId] }),
    properties: buildProperties(target, facts),
  };
  if (failure) device.conditions = [failureCondition(failure)];
  return device;
}
