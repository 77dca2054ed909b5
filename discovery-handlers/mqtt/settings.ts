import { LeafbridgeError } from '../../src/util/errors.js';
import type { AnnounceRules } from './announcements.js';
import { compileIdFilter, compilePropertyFilter, type PropertyFilter } from './filter.js';
import { type MqttDetails, mqttDefaults } from './schema.js';
import { announceTopics } from './topics.js';

/** A config's details with defaults applied, filters compiled and the URLs checked. */
export interface MqttSettings {
  /** The URL the handler connects to (credentials in it are used, never logged). */
  brokerUrl: string;
  /** brokerUrl (or advertisedBrokerUrl) without credentials: safe to log and to hand to pods. */
  publicUrl: string;
  username?: string;
  password?: string;
  rules: AnnounceRules;
  propertyFilter: PropertyFilter;
  maxDevices: number;
}

/** Throws a LeafbridgeError (`MQTT_BAD_URL`) for a broker URL that cannot work. */
export function resolveSettings(details: MqttDetails): MqttSettings {
  const brokerUrl = details.brokerUrl ?? mqttDefaults.brokerUrl;
  checkUrl(brokerUrl, 'brokerUrl');
  const advertised = details.advertisedBrokerUrl ?? brokerUrl;
  checkUrl(advertised, 'advertisedBrokerUrl');
  return {
    brokerUrl,
    publicUrl: withoutCredentials(advertised),
    username: details.username,
    password: details.password,
    rules: {
      topics: announceTopics(details.topicPrefix ?? mqttDefaults.topicPrefix),
      idFilter: compileIdFilter(details.ids),
      maxBirthBytes: details.maxBirthBytes ?? mqttDefaults.maxBirthBytes,
    },
    propertyFilter: compilePropertyFilter(details.properties),
    maxDevices: details.maxDevices ?? mqttDefaults.maxDevices,
  };
}

function checkUrl(text: string, field: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new LeafbridgeError('MQTT_BAD_URL', `${field}: not a URL`, { cause: err });
  }
  if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') {
    throw new LeafbridgeError('MQTT_BAD_URL', `${field}: must be an mqtt:// or mqtts:// URL`);
  }
  if (url.hostname === '') throw new LeafbridgeError('MQTT_BAD_URL', `${field}: no host`);
}

/** `mqtt://user:secret@host:1883` → `mqtt://host:1883`. */
export function withoutCredentials(text: string): string {
  const url = new URL(text);
  url.username = '';
  url.password = '';
  const out = url.toString();
  // URL adds a trailing slash to an empty path; the configured form had none.
  return out.endsWith('/') && !text.endsWith('/') ? out.slice(0, -1) : out;
}
