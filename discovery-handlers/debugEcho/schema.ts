import { type Static, Type } from '@sinclair/typebox';

export const debugEchoDefaults = {
  shared: false,
  pollIntervalMs: 1_000,
} as const;

const DebugEchoDeviceSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 256, description: 'The device id, stable across restarts.' }),
    properties: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), {
        default: {},
        additionalProperties: false,
        description: 'Handed to pods as environment variables, as they are (keys are env names).',
      }),
    ),
  },
  { additionalProperties: false, description: 'One made-up device.' },
);

export const DebugEchoDetailsSchema = Type.Object(
  {
    devices: Type.Array(DebugEchoDeviceSchema, {
      maxItems: 10_000,
      description: 'The devices this handler lists (an id given twice is listed once, the first wins).',
    }),
    presenceFile: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'A file naming the devices that are present, one id per line (blank lines ignored). No file: every ' +
          'device is present; an empty file: none. Edits are picked up within a second. `{node}` in the ' +
          'path is replaced by the node name, so one config can give each node its own file.',
      }),
    ),
    shared: Type.Optional(
      Type.Boolean({
        default: debugEchoDefaults.shared,
        description: 'Whether the devices count as seen from several nodes (like network cameras) or local.',
      }),
    ),
    pollIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 60_000,
        default: debugEchoDefaults.pollIntervalMs,
        description: 'How often the presence file is read anyway, a fallback to watching its directory.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Made-up devices for trying leafbridge out and for tests, switched on and off by a file.',
  },
);

export type DebugEchoDetails = Static<typeof DebugEchoDetailsSchema>;
export type DebugEchoDetailsSchemaType = typeof DebugEchoDetailsSchema;
