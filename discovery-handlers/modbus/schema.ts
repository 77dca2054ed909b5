import { type Static, Type } from '@sinclair/typebox';

export const modbusDefaults = {
  port: 502,
  unitIds: [1],
  timeoutMs: 500,
  concurrency: 16,
  scanTimeoutMs: 30_000,
  rescanIntervalMs: 60_000,
  baudRate: 19_200,
  parity: 'even',
} as const;

/** Most endpoints one config may expand to (a /22 range); larger ranges are refused at start-up. */
export const maxEndpoints = 1024;
/** Most unit ids probed per endpoint. */
export const maxUnitsPerEndpoint = 247;

export const ModbusRegisterSchema = Type.Object(
  {
    name: Type.String({
      pattern: '^[A-Za-z][A-Za-z0-9_]{0,31}$',
      description: 'Becomes the property MODBUS_REGISTER_<NAME> (upper-cased).',
    }),
    address: Type.Integer({
      minimum: 0,
      maximum: 65_535,
      description: 'Holding register address (0-based).',
    }),
    count: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 16,
        default: 1,
        description: 'Consecutive registers read (function 3).',
      }),
    ),
  },
  { additionalProperties: false },
);

export const ModbusSerialLineSchema = Type.Object(
  {
    path: Type.String({ minLength: 2, pattern: '^/', description: 'The serial port, e.g. /dev/ttyUSB0.' }),
    baudRate: Type.Optional(
      Type.Integer({
        minimum: 50,
        maximum: 4_000_000,
        default: modbusDefaults.baudRate,
        description: 'Baud rate.',
      }),
    ),
    parity: Type.Optional(
      Type.Union([Type.Literal('none'), Type.Literal('even'), Type.Literal('odd')], {
        default: modbusDefaults.parity,
        description: 'Parity (Modbus RTU defaults to even).',
      }),
    ),
    dataBits: Type.Optional(Type.Integer({ minimum: 7, maximum: 8, default: 8, description: 'Data bits.' })),
    stopBits: Type.Optional(Type.Integer({ minimum: 1, maximum: 2, default: 1, description: 'Stop bits.' })),
  },
  { additionalProperties: false },
);

export const ModbusDetailsSchema = Type.Object(
  {
    serialPorts: Type.Optional(
      Type.Array(ModbusSerialLineSchema, {
        maxItems: 32,
        description:
          'Modbus RTU lines, each probed for `unitIds` one request at a time. A config with serial ports is node-local: its devices are not shared.',
      }),
    ),
    hosts: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 260 }), {
        maxItems: maxEndpoints,
        description: 'Modbus TCP endpoints, `host` or `host:port` (IPv6 as `[addr]:port`).',
      }),
    ),
    cidr: Type.Optional(
      Type.String({
        pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$',
        description: `An IPv4 range probed on \`port\`, e.g. 10.0.4.0/24; at most ${maxEndpoints} addresses.`,
      }),
    ),
    port: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65_535,
        default: modbusDefaults.port,
        description: 'TCP port for `cidr` addresses and for `hosts` given without one.',
      }),
    ),
    unitIds: Type.Optional(
      Type.Array(Type.Integer({ minimum: 0, maximum: 255 }), {
        minItems: 1,
        maxItems: maxUnitsPerEndpoint,
        default: [...modbusDefaults.unitIds],
        description: 'Unit ids probed at each endpoint.',
      }),
    ),
    unitIdRange: Type.Optional(
      Type.Object(
        {
          first: Type.Integer({ minimum: 0, maximum: 255 }),
          last: Type.Integer({ minimum: 0, maximum: 255 }),
        },
        { additionalProperties: false, description: 'Unit ids first..last (inclusive), added to `unitIds`.' },
      ),
    ),
    registers: Type.Optional(
      Type.Array(ModbusRegisterSchema, {
        maxItems: 32,
        description:
          'Holding registers read from each unit and exposed as properties; a unit without Read Device Identification (43/14) is still found when one of them reads.',
      }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 20,
        maximum: 10_000,
        default: modbusDefaults.timeoutMs,
        description: 'Per connect and per request; a unit that misses it is skipped for this scan.',
      }),
    ),
    concurrency: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 256,
        default: modbusDefaults.concurrency,
        description: 'Endpoints probed at once.',
      }),
    ),
    scanTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 600_000,
        default: modbusDefaults.scanTimeoutMs,
        description:
          'A whole scan ends after this long; endpoints not reached by then are left for the next.',
      }),
    ),
    rescanIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 1_000,
        default: modbusDefaults.rescanIntervalMs,
        description: 'Pause between scans (Modbus has no announcements: the handler polls).',
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Modbus TCP and RTU units found by probing hosts, an IPv4 range and serial ports for unit ids.',
  },
);

export type ModbusDetails = Static<typeof ModbusDetailsSchema>;
export type ModbusRegister = Static<typeof ModbusRegisterSchema>;
export type ModbusSerialLine = Static<typeof ModbusSerialLineSchema>;
