import { type Static, Type } from '@sinclair/typebox';
import { secretRefField } from '../../src/util/secretRef.js';

export const mqttDefaults = {
  brokerUrl: 'mqtt://127.0.0.1:1883',
  topicPrefix: 'devices',
  maxDevices: 1_000,
  maxBirthBytes: 16_384,
} as const;

/** The longest device id (the `{id}` topic level) the handler accepts. */
export const maxIdLength = 128;

/** Property keys are handed to pods as environment variable names. */
export const envNamePattern = '^[A-Za-z_][A-Za-z0-9_]*$';

const brokerUrlPattern = '^mqtts?://[^\\s]+$';

const IdFilterSchema = Type.Object(
  {
    include: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: maxIdLength }), {
        maxItems: 4_096,
        description: 'Only devices whose id matches one of these patterns are kept (`*` matches any run).',
      }),
    ),
    exclude: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: maxIdLength }), {
        maxItems: 4_096,
        description: 'Devices whose id matches one of these patterns are dropped (`*` matches any run).',
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Filter on the device id; excluded ids are not tracked at all and do not count to maxDevices.',
  },
);

export const MqttDetailsSchema = Type.Object(
  {
    brokerUrl: Type.Optional(
      Type.String({
        pattern: brokerUrlPattern,
        default: mqttDefaults.brokerUrl,
        description: 'mqtt:// or mqtts:// URL of the edge broker the devices announce themselves on.',
      }),
    ),
    advertisedBrokerUrl: Type.Optional(
      Type.String({
        pattern: brokerUrlPattern,
        description:
          'The broker URL handed to pods as MQTT_BROKER_URL, when pods reach the broker by another address ' +
          'than the agent does. Default: brokerUrl without credentials.',
      }),
    ),
    username: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description:
          'User name for the broker; it needs subscribe rights on {topicPrefix}/+/birth and /status.',
      }),
    ),
    password: Type.Optional(
      Type.String({
        maxLength: 1_024,
        description: 'Password for the broker. Never logged or handed to pods. Prefer passwordSecretRef.',
      }),
    ),
    passwordSecretRef: secretRefField('password'),
    topicPrefix: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        pattern: '^[^#+]+$',
        default: mqttDefaults.topicPrefix,
        description: 'Topic levels before the device id: births are read from {topicPrefix}/{id}/birth.',
      }),
    ),
    ids: Type.Optional(IdFilterSchema),
    properties: Type.Optional(
      Type.Record(Type.String({ pattern: envNamePattern }), Type.String({ maxLength: 4_096 }), {
        additionalProperties: false,
        description:
          'Only devices whose birth properties hold every one of these key=value pairs are listed.',
      }),
    ),
    maxDevices: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100_000,
        default: mqttDefaults.maxDevices,
        description:
          'Most device ids tracked at once (announced, online or offline); further announcements are ignored ' +
          'and logged until a device is deleted. Bounds memory under a flood of births.',
      }),
    ),
    maxBirthBytes: Type.Optional(
      Type.Integer({
        minimum: 64,
        maximum: 1_048_576,
        default: mqttDefaults.maxBirthBytes,
        description: 'Largest birth payload accepted; larger ones are ignored and logged.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Devices that announce themselves on the edge MQTT broker with a retained birth message.',
  },
);

export type MqttDetails = Static<typeof MqttDetailsSchema>;
export type MqttDetailsSchemaType = typeof MqttDetailsSchema;
