import { type Static, Type } from '@sinclair/typebox';

/** Globs used when a config gives no `paths`: USB serial adapters and CDC-ACM devices. */
export const defaultSerialPaths = ['/dev/ttyUSB*', '/dev/ttyACM*'] as const;

export const serialDefaults = {
  rescanIntervalMs: 30_000,
  probeTimeoutMs: 1_000,
  probeBaudRate: 9_600,
  probeMaxBytes: 4_096,
} as const;

function idFilter(what: string) {
  return Type.Object(
    {
      include: Type.Optional(
        Type.Array(Type.String({ minLength: 1 }), {
          description: `Only devices whose ${what} is one of these are kept; a device whose ${what} is unknown is dropped.`,
        }),
      ),
      exclude: Type.Optional(
        Type.Array(Type.String({ minLength: 1 }), {
          description: `Devices whose ${what} is one of these are dropped.`,
        }),
      ),
    },
    {
      additionalProperties: false,
      description: `Filter on the USB ${what} (case-insensitive; hex ids may be written with or without 0x).`,
    },
  );
}

export const SerialProbeSchema = Type.Object(
  {
    write: Type.String({
      minLength: 1,
      description:
        'Bytes written to the port after opening it. Escapes \\r \\n \\t \\0 \\\\ and \\xHH are allowed.',
    }),
    expect: Type.String({
      minLength: 1,
      description:
        'A regular expression (RE2 syntax, matched in linear time: no backreferences or lookaround) the reply must match for the port to count as a device; ^ and $ match at line ends.',
    }),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 50,
        maximum: 60_000,
        default: serialDefaults.probeTimeoutMs,
        description: 'How long to wait for a matching reply before giving the port up.',
      }),
    ),
    baudRate: Type.Optional(
      Type.Integer({
        minimum: 50,
        maximum: 4_000_000,
        default: serialDefaults.probeBaudRate,
        description: 'Baud rate the port is opened with for the probe.',
      }),
    ),
    maxBytes: Type.Optional(
      Type.Integer({
        minimum: 16,
        maximum: 65_536,
        default: serialDefaults.probeMaxBytes,
        description: 'Most reply bytes read before giving the port up (bounds memory on a port that spews).',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Ask each port who it is; ports whose reply does not match are not devices of this config.',
  },
);

export const SerialDetailsSchema = Type.Object(
  {
    paths: Type.Optional(
      Type.Array(Type.String({ minLength: 2, pattern: '^/' }), {
        minItems: 1,
        default: [...defaultSerialPaths],
        description:
          'Absolute path globs (* ? [abc] within one path segment), e.g. /dev/ttyUSB*, /dev/serial/by-id/*, /tmp/lb/tty*.',
      }),
    ),
    vendorIds: Type.Optional(idFilter('vendor id (idVendor, e.g. 0403)')),
    productIds: Type.Optional(idFilter('product id (idProduct, e.g. 6001)')),
    serialNumbers: Type.Optional(idFilter('serial number')),
    manufacturers: Type.Optional(idFilter('manufacturer string')),
    probe: Type.Optional(SerialProbeSchema),
    rescanIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 1_000,
        default: serialDefaults.rescanIntervalMs,
        description: 'Full rescan interval, a fallback to the hot-plug events from watching the directories.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Serial ports found by path glob, USB identity and an optional probe.',
  },
);

export type SerialDetails = Static<typeof SerialDetailsSchema>;
export type SerialProbe = Static<typeof SerialProbeSchema>;
export type IdFilter = NonNullable<SerialDetails['vendorIds']>;
