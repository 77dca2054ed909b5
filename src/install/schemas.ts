import { type Static, Type as T } from '@sinclair/typebox';
import { DiscoveryConfigEntrySchema, NODE_NAME_PATTERN } from '../config/schema.js';

/**
 * The parts of the two resources that are not already schemas elsewhere: the Device's spec and status, and
 * the DiscoveryConfig's status (its spec is `DiscoveryConfigEntrySchema`'s, from the config file). They
 * follow the shapes in src/model/resources.ts and DESIGN.md's "Resources"; the CRDs are generated from them.
 */

/** A DiscoveryConfig's name, as the config file takes it. */
export const CONFIG_NAME_PATTERN = DiscoveryConfigEntrySchema.properties.name.pattern as string;

export const ConditionSchema = T.Object(
  {
    type: T.String({ minLength: 1, maxLength: 316, description: 'e.g. Valid, Online, Authenticated' }),
    status: T.Union([T.Literal('True'), T.Literal('False'), T.Literal('Unknown')]),
    reason: T.String({ maxLength: 1024, description: 'one CamelCase word, for programs' }),
    message: T.String({ maxLength: 32768, description: 'for people' }),
    lastTransitionTime: T.String({ format: 'date-time', description: 'when status last changed' }),
    observedGeneration: T.Optional(
      T.Integer({ minimum: 0, description: 'the generation the condition is about' }),
    ),
  },
  { description: 'A Kubernetes-style condition.' },
);

const Conditions = T.Array(ConditionSchema, {
  maxItems: 32,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  description: 'One per type.',
});

const StringMap = (description: string) => T.Record(T.String(), T.String(), { description });

/** A twin: a free-form JSON object whose `$version` orders it. */
const Twin = (description: string) => T.Record(T.String(), T.Unknown(), { description });

export const DeviceSpecSchema = T.Object(
  {
    id: T.String({
      minLength: 1,
      maxLength: 1024,
      description: 'Stable identity from the handler (a UUID, serial number or endpoint URL).',
    }),
    configName: T.String({ pattern: CONFIG_NAME_PATTERN, description: 'The DiscoveryConfig that found it.' }),
    handler: T.String({ minLength: 1, description: 'The discovery handler that found it.' }),
    shared: T.Boolean({
      description: 'Seen from several nodes (a network camera) rather than local to one.',
    }),
    nodes: T.Array(T.String({ pattern: NODE_NAME_PATTERN }), {
      uniqueItems: true,
      description: 'The nodes that see it now.',
    }),
    capacity: T.Integer({ minimum: 1, maximum: 1000, description: 'Pods that may share it.' }),
    properties: StringMap('Handed to pods as environment variables.'),
    deviceNodes: T.Array(
      T.Object(
        {
          hostPath: T.String({ pattern: '^/', description: 'Device node on the host, e.g. /dev/ttyUSB0.' }),
          containerPath: T.Optional(T.String({ pattern: '^/', description: 'Default: hostPath.' })),
          permissions: T.Optional(
            T.String({ pattern: '^[rwm]{1,3}$', description: 'cgroup permissions; default rw.' }),
          ),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'Device nodes handed to the pod (local devices).' },
    ),
    mounts: T.Array(
      T.Object(
        {
          hostPath: T.String({ pattern: '^/' }),
          containerPath: T.String({ pattern: '^/' }),
          readOnly: T.Optional(T.Boolean()),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'Host paths mounted into the pod.' },
    ),
    desired: T.Optional(Twin('Desired twin: cloud-authoritative, ordered by its `$version`.')),
  },
  { additionalProperties: false },
);

export const DeviceStatusSchema = T.Object(
  {
    online: T.Boolean({ description: 'Seen by at least one node now.' }),
    lastSeen: T.Optional(T.String({ format: 'date-time', description: 'When a node last saw it.' })),
    reported: T.Optional(Twin('Reported twin: edge-authoritative, ordered by its `$version`.')),
    slots: T.Optional(
      T.Record(
        T.String(),
        T.Object(
          {
            node: T.String({ pattern: NODE_NAME_PATTERN, description: 'The node whose pod holds the slot.' }),
            resource: T.String({
              minLength: 1,
              description: 'The extended resource it was allocated through (`leafbridge.io/<name>`).',
            }),
            since: T.String({ format: 'date-time', description: 'When the claim was made or renewed.' }),
          },
          { additionalProperties: false },
        ),
        {
          description:
            'Capacity slots in use, by kubelet device ID (`<device>-<n>`); written with optimistic concurrency, so two nodes never hold one slot.',
        },
      ),
    ),
    conditions: T.Optional(Conditions),
  },
  { additionalProperties: false },
);

export const DiscoveryConfigStatusSchema = T.Object(
  {
    devices: T.Optional(T.Integer({ minimum: 0, description: 'Devices found under this config.' })),
    brokers: T.Optional(
      T.Object(
        {
          wanted: T.Integer({ minimum: 0, description: 'Devices that should have a broker.' }),
          running: T.Integer({
            minimum: 0,
            description: 'Broker Pods running (Jobs: running or succeeded).',
          }),
        },
        { additionalProperties: false, description: 'Written by the controller.' },
      ),
    ),
    conditions: T.Optional(Conditions),
    observedGeneration: T.Optional(T.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export type DeviceSpec = Static<typeof DeviceSpecSchema>;
export type DeviceStatus = Static<typeof DeviceStatusSchema>;
export type DiscoveryConfigStatus = Static<typeof DiscoveryConfigStatusSchema>;
