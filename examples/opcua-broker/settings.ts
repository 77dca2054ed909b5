/**
 * What the OPC UA broker reads from its environment. The server comes from the Device's properties, which the
 * leafbridge device plugin hands to the pod as environment variables (discovery-handlers/opcua/devices.ts):
 * `OPCUA_ENDPOINT_URL`, `OPCUA_SECURITY_MODE`, `OPCUA_SECURITY_POLICY`, and `OPCUA_<NAME>` per browse path of
 * the DiscoveryConfig. What to read is the broker's own setting (`READ_NODES`, in the `brokerPodSpec`).
 */

export class SettingsError extends Error {
  readonly code = 'SETTINGS';
}

export const SecurityModes = ['None', 'Sign', 'SignAndEncrypt'] as const;
export type SecurityModeName = (typeof SecurityModes)[number];

/** One variable to follow: by browse path from the Root folder (`/Objects/1:Plant/1:Temperature`) or NodeId. */
export interface NodeToRead {
  name: string;
  kind: 'browsePath' | 'nodeId';
  target: string;
}

export interface MqttSettings {
  url: string;
  /** The values go to `devices/{deviceId}/telemetry/{name}` on the agent's edge broker. */
  deviceId: string;
  username: string | undefined;
  password: string | undefined;
}

export interface PlcSettings {
  /** The Device this pod was given (`LEAFBRIDGE_DEVICES`), else the server's application URI. */
  device: string;
  endpointUrl: string;
  securityMode: SecurityModeName;
  securityPolicy: string;
  nodes: NodeToRead[];
  samplingIntervalMs: number;
  /** The client certificate and trust lists; undefined: a temporary folder (a new certificate each start). */
  pkiDir: string | undefined;
  acceptUnknownCertificates: boolean;
  user: { userName: string; password: string } | undefined;
  /** The Device's other properties (serial number, model, ...), logged once at start. */
  identity: Record<string, string>;
  mqtt: MqttSettings | undefined;
}

type Env = Record<string, string | undefined>;

const NODE_ID = /^(ns|nsu|i|s|g|b)=/;

/** `[name=]target`, target a browse path (starts with `/`) or a NodeId (`ns=1;i=1001`, `i=2258`). */
export function parseNode(item: string): NodeToRead {
  const eq = item.indexOf('=');
  const rest = eq > 0 ? item.slice(eq + 1) : '';
  const named = eq > 0 && (rest.startsWith('/') || NODE_ID.test(rest));
  const target = (named ? rest : item).trim();
  const kind = target.startsWith('/') ? 'browsePath' : 'nodeId';
  if (kind === 'nodeId' && !NODE_ID.test(target)) {
    throw new SettingsError(
      `READ_NODES: ${JSON.stringify(item)} is neither a browse path (/...) nor a NodeId`,
    );
  }
  const lastName = target.split('/').pop()?.replace(/^\d+:/, '') ?? target;
  const name = named ? item.slice(0, eq).trim() : kind === 'browsePath' ? lastName : target;
  return { name, kind, target };
}

/** READ_NODES: items separated by commas or newlines. */
export function parseNodes(text: string | undefined): NodeToRead[] {
  const items = (text ?? '')
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) {
    throw new SettingsError(
      'READ_NODES is empty: list browse paths or NodeIds, e.g. /Objects/1:Plant/1:Temperature',
    );
  }
  return items.map(parseNode);
}

function mqttSettings(env: Env, device: string): MqttSettings | undefined {
  if (!env.MQTT_BROKER_URL) return undefined;
  if (!/^mqtts?:\/\//.test(env.MQTT_BROKER_URL)) {
    throw new SettingsError(`MQTT_BROKER_URL=${env.MQTT_BROKER_URL}: must be an mqtt:// or mqtts:// URL`);
  }
  const deviceId = env.MQTT_DEVICE_ID || device;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(deviceId)) {
    throw new SettingsError(
      `MQTT device id ${JSON.stringify(deviceId)} is not a valid topic level; set MQTT_DEVICE_ID`,
    );
  }
  return {
    url: env.MQTT_BROKER_URL,
    deviceId,
    username: env.MQTT_USERNAME || undefined,
    password: env.MQTT_PASSWORD || undefined,
  };
}

export function loadSettings(env: Env): PlcSettings {
  const endpointUrl = env.OPCUA_ENDPOINT_URL;
  if (!endpointUrl?.startsWith('opc.tcp://')) {
    throw new SettingsError(
      'OPCUA_ENDPOINT_URL is missing or not opc.tcp://: request a leafbridge.io/<device> resource of an opcua DiscoveryConfig',
    );
  }
  const mode = env.OPCUA_SECURITY_MODE || 'None';
  if (!(SecurityModes as readonly string[]).includes(mode)) {
    throw new SettingsError(`OPCUA_SECURITY_MODE=${mode}: must be one of ${SecurityModes.join(', ')}`);
  }
  const samplingIntervalMs = Number(env.SAMPLING_INTERVAL_MS || 1000);
  if (!Number.isInteger(samplingIntervalMs) || samplingIntervalMs < 10 || samplingIntervalMs > 3_600_000) {
    throw new SettingsError(
      `SAMPLING_INTERVAL_MS=${env.SAMPLING_INTERVAL_MS}: must be an integer from 10 to 3600000`,
    );
  }
  const device = env.LEAFBRIDGE_DEVICES?.split(',')[0] || env.OPCUA_APPLICATION_URI || 'plc';
  const own = new Set([
    'OPCUA_ENDPOINT_URL',
    'OPCUA_SECURITY_MODE',
    'OPCUA_SECURITY_POLICY',
    'OPCUA_USERNAME',
    'OPCUA_PASSWORD',
  ]);
  const identity = Object.fromEntries(
    Object.entries(env).filter(
      (e): e is [string, string] => e[0].startsWith('OPCUA_') && !own.has(e[0]) && e[1] !== undefined,
    ),
  );
  return {
    device,
    endpointUrl,
    securityMode: mode as SecurityModeName,
    securityPolicy: env.OPCUA_SECURITY_POLICY || 'None',
    nodes: parseNodes(env.READ_NODES),
    samplingIntervalMs,
    pkiDir: env.PKI_DIR || undefined,
    acceptUnknownCertificates: env.ACCEPT_UNKNOWN_CERTIFICATES === 'true',
    user: env.OPCUA_USERNAME
      ? { userName: env.OPCUA_USERNAME, password: env.OPCUA_PASSWORD ?? '' }
      : undefined,
    identity,
    mqtt: mqttSettings(env, device),
  };
}
