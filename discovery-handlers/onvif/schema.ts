import { type Static, type TString, Type } from '@sinclair/typebox';
import { secretRefField } from '../../src/util/secretRef.js';

export const onvifDefaults = {
  probeIntervalMs: 60_000,
  probeTimeoutMs: 2_000,
  soapTimeoutMs: 5_000,
  maxResponseBytes: 1_048_576,
  maxDevices: 256,
  maxConcurrentQueries: 8,
} as const;

const ipv4 = '(25[0-5]|2[0-4]\\d|1?\\d?\\d)(\\.(25[0-5]|2[0-4]\\d|1?\\d?\\d)){3}';
export const cidrPattern = `^${ipv4}(/(3[0-2]|[12]?\\d))?$`;
export const macPattern = '^[0-9A-Fa-f]{2}([:.-]?[0-9A-Fa-f]{2}){5}$';

function filter(what: string, item: TString) {
  return Type.Optional(
    Type.Object(
      {
        action: Type.Union([Type.Literal('include'), Type.Literal('exclude')], {
          description: `include: keep only cameras whose ${what} matches an item; exclude: drop those that match.`,
        }),
        items: Type.Array(item, { maxItems: 4_096, description: `The ${what} values to match.` }),
      },
      { additionalProperties: false, description: `Filter on the camera's ${what}.` },
    ),
  );
}

function credentials(description: string) {
  return Type.Object(
    {
      username: Type.String({ minLength: 1, maxLength: 256, description: 'ONVIF user name.' }),
      password: Type.Optional(
        Type.String({
          maxLength: 1_024,
          description: 'ONVIF password (sent only as a WS-Security digest); prefer passwordSecretRef.',
        }),
      ),
      passwordSecretRef: secretRefField('password'),
    },
    { additionalProperties: false, description },
  );
}
const CredentialsSchema = credentials('WS-UsernameToken credentials of one camera.');

function milliseconds(description: string, def: number, minimum: number, maximum: number) {
  return Type.Optional(Type.Integer({ minimum, maximum, default: def, description }));
}

export const OnvifDetailsSchema = Type.Object(
  {
    interface: Type.String({
      minLength: 1,
      maxLength: 64,
      description:
        'Network interface to discover on: a name (eth1) or one of its IPv4 addresses. Probes leave, and ' +
        'announcements are heard, through this interface only.',
    }),
    probeIntervalMs: milliseconds(
      'Safety-net re-probe interval. Discovery is driven by Hello and Bye; this catches lost datagrams. ' +
        'A camera unheard for three intervals is dropped.',
      onvifDefaults.probeIntervalMs,
      1_000,
      86_400_000,
    ),
    probeTimeoutMs: milliseconds(
      'How long ProbeMatches are awaited after a Probe before the round counts as done.',
      onvifDefaults.probeTimeoutMs,
      100,
      60_000,
    ),
    soapTimeoutMs: milliseconds(
      'Limit for one SOAP request to a camera, from connect to the last byte of the reply.',
      onvifDefaults.soapTimeoutMs,
      100,
      120_000,
    ),
    maxResponseBytes: Type.Optional(
      Type.Integer({
        minimum: 4_096,
        maximum: 16_777_216,
        default: onvifDefaults.maxResponseBytes,
        description: 'Largest SOAP reply read from a camera; a larger one is aborted and reported.',
      }),
    ),
    maxDevices: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10_000,
        default: onvifDefaults.maxDevices,
        description: 'Most cameras tracked at once; further announcements are dropped (and logged).',
      }),
    ),
    credentials: Type.Optional(
      Type.Object(
        {
          default: Type.Optional(credentials('Used for every camera not listed under devices.')),
          devices: Type.Optional(
            Type.Record(Type.String(), CredentialsSchema, {
              description:
                'Per-camera credentials, keyed by uuid (in any form: bare, uuid:, urn:uuid:, braces, any case) or IPv4 address.',
            }),
          ),
        },
        { additionalProperties: false, description: 'WS-UsernameToken credentials for the cameras.' },
      ),
    ),
    filters: Type.Optional(
      Type.Object(
        {
          ipAddresses: filter(
            'IPv4 address (CIDR blocks or single addresses)',
            Type.String({ pattern: cidrPattern }),
          ),
          macAddresses: filter('MAC address (any separator, any case)', Type.String({ pattern: macPattern })),
          scopes: filter(
            'scopes (an item matches a scope it equals or prefixes)',
            Type.String({ minLength: 1 }),
          ),
          uuids: filter(
            'uuid (in any form: bare, uuid:, urn:uuid:, braces, any case)',
            Type.String({ minLength: 1 }),
          ),
          manufacturers: filter('manufacturer (case-insensitive)', Type.String({ minLength: 1 })),
          models: filter('model (case-insensitive)', Type.String({ minLength: 1 })),
        },
        {
          additionalProperties: false,
          description:
            'Which cameras to keep. uuid, IP and scope filters apply on announcement; MAC, manufacturer and ' +
            'model filters once the camera has been read (a camera that cannot be read is kept, with its condition).',
        },
      ),
    ),
  },
  { additionalProperties: false },
);

export type OnvifDetailsSchemaType = typeof OnvifDetailsSchema;
export type OnvifDetails = Static<typeof OnvifDetailsSchema>;
export type OnvifFilters = NonNullable<OnvifDetails['filters']>;
export type OnvifFilter = NonNullable<OnvifFilters['uuids']>;
export type OnvifCredentials = Static<typeof CredentialsSchema>;
