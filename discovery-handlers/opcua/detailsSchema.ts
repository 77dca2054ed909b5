import { type Static, Type } from '@sinclair/typebox';

/** OPC UA message security modes a client may ask for (Part 4, MessageSecurityMode). */
export const SecurityMode = { None: 'None', Sign: 'Sign', SignAndEncrypt: 'SignAndEncrypt' } as const;
export type SecurityMode = (typeof SecurityMode)[keyof typeof SecurityMode];

/** Security policies by their short name (the part after `#` in the policy URI). */
export const SecurityPolicy = {
  None: 'None',
  Basic128Rsa15: 'Basic128Rsa15',
  Basic256: 'Basic256',
  Basic256Sha256: 'Basic256Sha256',
  Aes128_Sha256_RsaOaep: 'Aes128_Sha256_RsaOaep',
  Aes256_Sha256_RsaPss: 'Aes256_Sha256_RsaPss',
} as const;
export type SecurityPolicy = (typeof SecurityPolicy)[keyof typeof SecurityPolicy];

const literals = <T extends string>(values: readonly T[], description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );

const nameFilter = (what: string) =>
  Type.Object(
    {
      action: literals(
        ['include', 'exclude'],
        `include: keep only servers whose ${what} is listed; exclude: drop them.`,
      ),
      items: Type.Array(Type.String(), { description: `${what}s, matched exactly.` }),
    },
    { additionalProperties: false, description: `Filter servers by ${what}.` },
  );

export const opcuaDetailsSchema = Type.Object(
  {
    discoveryUrls: Type.Array(Type.String({ pattern: '^opc\\.tcp://[^\\s]+$' }), {
      minItems: 1,
      description:
        'opc.tcp:// URLs of OPC UA servers or of Local Discovery Servers; each is asked FindServers.',
    }),
    applicationNames: Type.Optional(nameFilter('application name')),
    applicationUris: Type.Optional(nameFilter('application URI')),
    securityMode: Type.Optional(
      literals(Object.values(SecurityMode), 'Message security mode of the endpoint to select. Default None.'),
    ),
    securityPolicy: Type.Optional(
      literals(Object.values(SecurityPolicy), 'Security policy of the endpoint to select. Default None.'),
    ),
    pkiDir: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'Folder for the client certificate and trust lists (own/, trusted/, rejected/). Default: a temporary ' +
          'folder, so a new client certificate on every start; set it (e.g. under the agent dataDir) for a stable one.',
      }),
    ),
    trustedCertificates: Type.Optional(
      Type.Array(Type.String({ pattern: '-----BEGIN CERTIFICATE-----' }), {
        description: 'PEM server certificates to trust, added to the trust list at start.',
      }),
    ),
    automaticallyAcceptUnknownCertificates: Type.Optional(
      Type.Boolean({
        description:
          'Trust any server certificate not yet in the trust list. Default false, except with securityMode None.',
      }),
    ),
    browsePaths: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({
              pattern: '^[A-Za-z][A-Za-z0-9_-]*$',
              description: 'Becomes the property OPCUA_<NAME in upper snake case>.',
            }),
            path: Type.String({
              minLength: 1,
              description: 'OPC UA relative path from the Root folder, e.g. /Objects/1:Plant/1:SerialNumber.',
            }),
          },
          { additionalProperties: false },
        ),
        {
          description:
            'Variables read in a session on the selected endpoint; their values become device properties. ' +
            'Prefer values that do not change (serial number, model): a changed value is a changed device list.',
        },
      ),
    ),
    pollIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        description:
          'OPC UA servers do not announce themselves to clients, so discovery polls. Default 1000: a poll is one ' +
          'connection with FindServers and GetEndpoints (and GetEndpoints per server an LDS lists); raise it ' +
          'for a discovery server with many servers or a PLC that should see fewer connections. ' +
          'A found server that stops is noticed sooner, through its connection (see watchConnections).',
      }),
    ),
    watchConnections: Type.Optional(
      Type.Boolean({
        description:
          'Hold one secure channel (no session) to each found server, so a server that stops or stops ' +
          'answering triggers a new scan at once. Default true.',
      }),
    ),
    keepAliveIntervalMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        description: 'How often a watched connection is checked with a GetEndpoints request. Default 5000.',
      }),
    ),
    connectTimeoutMs: Type.Optional(
      Type.Integer({
        minimum: 50,
        description:
          'Bound on one exchange with one server (connect, requests): a server that hangs is given up. Default 3000.',
      }),
    ),
    maxDevices: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'At most this many devices are listed (by id order). Default 100.',
      }),
    ),
  },
  { additionalProperties: false },
);

export type OpcuaDetails = Static<typeof opcuaDetailsSchema>;
export type NameFilter = NonNullable<OpcuaDetails['applicationNames']>;
export type BrowsePath = NonNullable<OpcuaDetails['browsePaths']>[number];
