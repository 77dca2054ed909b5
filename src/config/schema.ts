import { type Static, Type as T } from '@sinclair/typebox';
import { PASSWORD_HASH_PATTERN } from '../util/password.js';
import { DURATION_PATTERN, SIZE_PATTERN } from './size.js';

/** Schema options with a message shown instead of the schema library's generic one. */
const msg = (errorMessage: string, description?: string) => ({ errorMessage, description });

const Size = (description: string, def: string) =>
  T.Union([T.Integer({ minimum: 0 }), T.String({ pattern: SIZE_PATTERN })], {
    ...msg('must be a size such as 1GiB, 512MB or a number of bytes', description),
    default: def,
  });

const Duration = (description: string, def: string) =>
  T.Union([T.Integer({ minimum: 0 }), T.String({ pattern: DURATION_PATTERN })], {
    ...msg('must be a duration such as 250ms, 30s, 5m, 1h (or milliseconds)', description),
    default: def,
  });

const Listen = (description: string, def: string) =>
  T.String({
    pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):\\d{1,5}$',
    ...msg('must be host:port, e.g. 0.0.0.0:1883 or [::]:1883 (port 0 picks a free port)', description),
    default: def,
  });

/** Akri-compatible discovery handlers in their own processes (docs/discovery-handlers.md, "External handlers"). */
const ExternalHandlersSchema = T.Object(
  {
    handlers: T.Array(
      T.String({
        pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$',
        ...msg('must be a handler name: letters, digits, ".", "_", "-"'),
      }),
      {
        default: [],
        description:
          'names external handlers may register under, and DiscoveryConfigs then name; a name of a built-in handler (e.g. onvif) makes configs use the external one instead. Empty: no registration socket',
      },
    ),
    dir: T.Optional(
      T.String({
        pattern: '^/',
        ...msg(
          'must be an absolute directory',
          "where agent-registration.sock is served (Akri's /var/lib/akri in a cluster); default DATADIR/akri",
        ),
      }),
    ),
    firstListTimeout: Duration(
      "how long a handler's Discover may take to send its first device list before the call is cancelled and retried with backoff",
      '30s',
    ),
    minListInterval: Duration(
      'a handler that sends lists faster than this has only its latest list applied, once per interval',
      '500ms',
    ),
    maxDevices: T.Integer({
      minimum: 1,
      maximum: 100000,
      default: 10000,
      description: 'a device list longer than this is refused whole (the previous one stays)',
    }),
    maxMessageSize: Size('the largest Discover message accepted; a larger one fails the call', '4MiB'),
  },
  { default: {}, additionalProperties: false },
);

/** Names that become MQTT topic levels and Kubernetes names: no `/`, `+`, `#`. */
export const NODE_NAME_PATTERN = '^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$';
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';

const PasswordHash = T.String({
  pattern: PASSWORD_HASH_PATTERN,
  ...msg('must be a hash from `leafbridge hash-password` (scrypt$N$r$p$salt$hash)'),
});

const TopicPattern = T.String({
  minLength: 1,
  maxLength: 256,
  description: 'MQTT topic filter; `+` and `#` wildcards allowed',
});

export const DeviceCredentialSchema = T.Object(
  {
    id: T.String({
      pattern: DEVICE_ID_PATTERN,
      ...msg('must be 1-128 characters of letters, digits and ._:- (it becomes a topic level)'),
    }),
    username: T.Optional(T.String({ minLength: 1, description: 'defaults to the device id' })),
    passwordHash: PasswordHash,
  },
  {
    additionalProperties: false,
    description: 'A leaf device: it may publish and subscribe only under devices/{id}/.',
  },
);

export const UserCredentialSchema = T.Object(
  {
    username: T.String({ minLength: 1 }),
    passwordHash: PasswordHash,
    publish: T.Array(TopicPattern, { default: [], description: 'topic filters this user may publish to' }),
    subscribe: T.Array(TopicPattern, {
      default: [],
      description: 'topic filters this user may subscribe to',
    }),
  },
  { additionalProperties: false, description: 'Another client (a pod, a tool) with explicit topic rights.' },
);

/** A DiscoveryConfig as the agent's config file holds it: the same shape as the CRD's metadata.name + spec. */
/** A Kubernetes object passed through as it is (the API server validates it where it is used). */
const KubeObject = (description: string) =>
  T.Record(T.String(), T.Unknown(), { description, 'x-kubernetes-preserve-unknown-fields': true });

const ServiceSpec = (description: string) =>
  T.Object(
    {
      type: T.Optional(
        T.Union([T.Literal('ClusterIP'), T.Literal('NodePort'), T.Literal('LoadBalancer')], {
          default: 'ClusterIP',
        }),
      ),
      ports: T.Array(
        T.Object(
          {
            name: T.Optional(T.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 15 })),
            port: T.Integer({ minimum: 1, maximum: 65535 }),
            targetPort: T.Optional(T.Integer({ minimum: 1, maximum: 65535 })),
            protocol: T.Optional(T.Union([T.Literal('TCP'), T.Literal('UDP'), T.Literal('SCTP')])),
          },
          { additionalProperties: false },
        ),
        { minItems: 1 },
      ),
    },
    { additionalProperties: false, description },
  );

export const DiscoveryConfigEntrySchema = T.Object(
  {
    name: T.String({
      pattern: '^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$',
      description: 'a DNS label; prefixes its devices',
    }),
    spec: T.Object(
      {
        handler: T.Object(
          {
            name: T.String({
              minLength: 1,
              description: 'one of the registered handlers (onvif, opcua, serial, mqtt, debug-echo)',
            }),
            details: T.Record(T.String(), T.Unknown(), {
              default: {},
              description: "the handler's own settings, checked by its schema",
            }),
          },
          { additionalProperties: false },
        ),
        capacity: T.Integer({
          minimum: 1,
          maximum: 1000,
          default: 1,
          description: 'pods that may share one device',
        }),
        properties: T.Record(T.String(), T.String(), {
          default: {},
          description: 'extra properties for every device',
        }),
        nodeSelector: T.Optional(
          T.Record(T.String(), T.String(), {
            description:
              'node labels a node must carry to run this config, like a Pod nodeSelector (standalone: ignored)',
          }),
        ),
        brokerPodSpec: T.Optional(
          KubeObject(
            'a Pod spec: the controller runs one such Pod per device, on a node that sees it, requesting the device (cluster only)',
          ),
        ),
        brokerJobSpec: T.Optional(
          KubeObject(
            'a Job spec: the controller runs one such Job per device instead of a Pod (cluster only)',
          ),
        ),
        deviceService: T.Optional(
          ServiceSpec('a Service per device, selecting its broker Pod (cluster only)'),
        ),
        configService: T.Optional(
          ServiceSpec("one Service for the config, selecting all of its devices' broker Pods (cluster only)"),
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type DiscoveryConfigEntry = Static<typeof DiscoveryConfigEntrySchema>;

/** A PEM file path; relative paths are from the config file. */
const PemFile = (description: string) => T.String({ minLength: 1, description });

const ServerTls = (what: string, files: string) => ({
  cert: PemFile(`PEM certificate (with its chain) the ${what} presents; re-read when it changes`),
  key: PemFile('PEM private key of that certificate; re-read when it changes'),
  reloadInterval: Duration(
    `how often the ${files} files are read again; a change applies to new handshakes, connected clients stay`,
    '10s',
  ),
});

const BrokerTls = T.Object(
  {
    listen: Listen('the mqtts listener', '0.0.0.0:8883'),
    ...ServerTls('mqtts listener', 'certificate, key and client CA'),
    clientCa: T.Optional(
      PemFile(
        "PEM CAs whose client certificates are accepted; a certificate from any other CA is refused at the handshake, before any MQTT is read. The name in a certificate (identityFrom) is the client's username: a device or user of auth, or else a device of that id",
      ),
    ),
    clientCertificates: T.Union([T.Literal('required'), T.Literal('optional')], {
      default: 'required',
      ...msg(
        'must be required or optional',
        'with clientCa: required refuses a handshake without a certificate; optional lets such a client log in with a password',
      ),
    }),
    identityFrom: T.Union(
      [T.Literal('cn'), T.Literal('san-dns'), T.Literal('san-uri'), T.Literal('san-email')],
      {
        default: 'cn',
        ...msg(
          'must be cn, san-dns, san-uri or san-email',
          "which name of a client certificate is the client's username: the subject CN, or the first subject alternative name of that type",
        ),
      },
    ),
  },
  { additionalProperties: false, description: 'MQTT over TLS (mqtts), beside the plain listener' },
);

const BrokerWebsocket = T.Object(
  {
    listen: Listen('MQTT over WebSocket', '0.0.0.0:8083'),
    path: T.String({
      pattern: '^/',
      default: '/mqtt',
      ...msg('must be a path starting with /', 'the HTTP path clients open the WebSocket on'),
    }),
    tls: T.Boolean({
      default: false,
      description:
        'wss: served with the certificate, key and client CA of broker.tls (which must be set); false: plain ws',
    }),
  },
  { additionalProperties: false, description: 'MQTT over WebSocket (browsers, some gateways)' },
);

export const AgentConfigSchema = T.Object(
  {
    node: T.String({
      pattern: NODE_NAME_PATTERN,
      ...msg(
        "must be a lowercase DNS name (the node's name); absent: $NODE_NAME, which the DaemonSet sets from the downward API",
      ),
    }),
    dataDir: T.String({
      minLength: 1,
      description: 'SQLite store: outbox, twins, broker sessions; relative paths are from the config file',
    }),
    log: T.Object(
      {
        level: T.Union(
          [
            T.Literal('fatal'),
            T.Literal('error'),
            T.Literal('warn'),
            T.Literal('info'),
            T.Literal('debug'),
            T.Literal('trace'),
          ],
          { default: 'info', ...msg('must be one of fatal, error, warn, info, debug, trace') },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    broker: T.Object(
      {
        listen: Listen('the edge broker for leaf devices and pods', '0.0.0.0:1883'),
        maxPacketSize: Size('largest MQTT packet accepted; larger ones close the connection', '256KiB'),
        rateLimit: T.Object(
          {
            messagesPerSecond: T.Integer({
              minimum: 1,
              default: 2000,
              description: 'sustained PUBLISH rate per client',
            }),
            burst: T.Integer({ minimum: 1, default: 10000, description: 'PUBLISH burst per client' }),
          },
          { default: {}, additionalProperties: false },
        ),
        refusalLogInterval: Duration(
          'refusals (ACL, rate, payload, storage) are logged once per client and reason, then summed this often',
          '1m',
        ),
        core: T.Boolean({
          default: true,
          description:
            "the broker's own core reads each connection's CONNECT and keeps publish-only clean sessions (telemetry without aedes' per-client cost); a client that subscribes, keeps a session, has a will or sends QoS 2 goes to aedes. false: aedes takes every connection",
        }),
        tls: T.Optional(BrokerTls),
        websocket: T.Optional(BrokerWebsocket),
      },
      { default: {}, additionalProperties: false },
    ),
    http: T.Object(
      {
        listen: Listen(
          '/healthz /readyz /metrics, the API and the dashboard (loopback unless set; in a cluster the install sets 0.0.0.0)',
          '127.0.0.1:8080',
        ),
        auth: T.Object(
          {
            tokensFile: T.Optional(
              T.String({
                minLength: 1,
                description:
                  'YAML file of accepted bearer tokens, each `{name, role: read-only|read-write, sha256}` (`leafbridge token` makes one); re-read when it changes',
              }),
            ),
            anonymous: T.Union([T.Literal('none'), T.Literal('read-only'), T.Literal('read-write')], {
              default: 'none',
              ...msg(
                'must be none, read-only or read-write',
                'what a request without a token may do; anything but none lets anyone who reaches the listener in',
              ),
            }),
            cacheTtl: Duration(
              "how long the Kubernetes API server's TokenReview and SubjectAccessReview answers are reused (in a cluster)",
              '10s',
            ),
          },
          {
            default: {},
            additionalProperties: false,
            description:
              'who may use the API: /healthz and /readyz are open; the rest needs a token from tokensFile or, in a cluster, one the API server accepts with RBAC rights on the leafbridge.io resources',
          },
        ),
        tls: T.Optional(
          T.Object(ServerTls('HTTP listener', 'certificate and key'), {
            additionalProperties: false,
            description: 'serve HTTPS instead of HTTP on http.listen',
          }),
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    upstream: T.Optional(
      T.Object(
        {
          url: T.String({
            pattern: '^mqtts?://[^\\s/?#]+(:\\d{1,5})?/?$',
            ...msg('must be an mqtt:// or mqtts:// URL'),
          }),
          prefix: T.String({
            pattern: '^[^/+#\\s]+(/[^/+#\\s]+)*$',
            default: 'leafbridge',
            ...msg('must be one or more topic levels without wildcards'),
          }),
          clientId: T.Optional(
            T.String({ minLength: 1, maxLength: 128, description: 'default leafbridge-{node}' }),
          ),
          protocolVersion: T.Union([T.Literal(4), T.Literal(5)], {
            default: 5,
            ...msg('must be 4 (MQTT 3.1.1) or 5 (MQTT 5)'),
          }),
          username: T.Optional(T.String({ description: 'upstream MQTT username' })),
          password: T.Optional(T.String({ description: 'prefer passwordFile' })),
          passwordFile: T.Optional(T.String({ description: 'file holding the upstream password' })),
          tls: T.Optional(
            T.Object(
              {
                ca: T.Optional(T.String({ description: 'PEM file of CAs to trust' })),
                cert: T.Optional(T.String({ description: 'PEM client certificate file' })),
                key: T.Optional(T.String({ description: 'PEM client key file' })),
                rejectUnauthorized: T.Boolean({
                  default: true,
                  description: 'verify the upstream certificate',
                }),
              },
              { additionalProperties: false },
            ),
          ),
          keepalive: Duration('MQTT keepalive; a silent connection is dropped after 1.5 periods', '30s'),
          inflight: T.Integer({
            minimum: 1,
            maximum: 65535,
            default: 1000,
            description: 'QoS 1 messages in flight',
          }),
          reconnect: T.Object(
            {
              minDelay: Duration('first reconnect delay', '500ms'),
              maxDelay: Duration('reconnect delay cap', '30s'),
            },
            { default: {}, additionalProperties: false },
          ),
          sessionExpiry: Duration('how long the upstream broker keeps our session (MQTT 5)', '7d'),
        },
        { additionalProperties: false },
      ),
    ),
    outbox: T.Object(
      {
        maxBytes: Size('bound of the outbox (payload + topic bytes)', '1GiB'),
        overflow: T.Union([T.Literal('drop-oldest'), T.Literal('reject-new')], {
          default: 'drop-oldest',
          ...msg('must be drop-oldest or reject-new'),
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    store: T.Object(
      {
        synchronous: T.Union([T.Literal('normal'), T.Literal('full')], {
          default: 'normal',
          ...msg('must be normal (survives process crashes) or full (survives power loss)'),
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    commands: T.Object(
      { ttl: Duration('how long a command waits for an offline device', '1h') },
      { default: {}, additionalProperties: false },
    ),
    auth: T.Object(
      {
        allowAnonymous: T.Boolean({ default: false, description: 'let clients without credentials in' }),
        devices: T.Array(DeviceCredentialSchema, { default: [] }),
        users: T.Array(UserCredentialSchema, { default: [] }),
        credentialsFile: T.Optional(
          T.String({
            minLength: 1,
            description:
              'YAML file with more `devices` and `users` (same entries as here); re-read when it changes, so passwords are added, changed and removed without a restart',
          }),
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    devicePlugins: T.Object(
      {
        dir: T.String({
          minLength: 1,
          default: '/var/lib/kubelet/device-plugins',
          description:
            "the kubelet's device-plugin directory (where kubelet.sock is; our sockets there, `leafbridge-<hash>.sock`, allow it at most 78 bytes); device plugins are off when it does not exist",
        }),
        podResources: T.String({
          minLength: 1,
          default: '/var/lib/kubelet/pod-resources/kubelet.sock',
          description:
            "the kubelet's PodResources socket: slots of pods that are gone are released (without it: the pods of this node, from the Kubernetes API)",
        }),
        cdi: T.Boolean({
          default: false,
          description:
            'hand devices to containers as CDI devices (leafbridge.io/device=<name>, spec written to cdiDir) instead of device nodes and mounts; needs a container runtime with CDI enabled',
        }),
        cdiDir: T.String({
          minLength: 1,
          default: '/var/run/cdi',
          description: 'where the CDI spec (leafbridge.io-device.json) is written when cdi is on',
        }),
        releaseInterval: Duration('how often slot claims are checked against the pods that use them', '30s'),
        releaseGrace: Duration(
          'a claim younger than this is kept even when no pod uses it yet (the kubelet reports a container some time after Allocate)',
          '2m',
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    discovery: T.Object(
      {
        gracePeriod: Duration(
          'how long a vanished device stays (offline) before its Device is deleted',
          '5m',
        ),
        probeWritePaths: T.Array(T.String({ pattern: '^/', ...msg('must be an absolute path prefix') }), {
          default: ['/dev/ttyUSB', '/dev/ttyACM'],
          description:
            'device files a serial probe may write to, as prefixes of their real path (symlinks resolved); a DiscoveryConfig cannot widen this',
        }),
        external: ExternalHandlersSchema,
      },
      { default: {}, additionalProperties: false },
    ),
    secrets: T.Object(
      {
        dir: T.String({
          minLength: 1,
          default: '/etc/leafbridge/secrets',
          description:
            "standalone: where `{secretKeyRef: {name, key}}` in handler details is read, as the file DIR/NAME/KEY (the layout of a mounted Secret); in a cluster the Secret NAME of the agent's namespace is read instead",
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    discoveryConfigs: T.Array(DiscoveryConfigEntrySchema, {
      default: [],
      description:
        'standalone DiscoveryConfigs (same schema as the CRD); handler details are checked by the handler. ' +
        'Ignored in a cluster, where configs are DiscoveryConfig objects',
    }),
    kubernetes: T.Union([T.Literal('auto'), T.Literal('off'), T.String({ minLength: 1 })], {
      default: 'auto',
      ...msg(
        'must be auto, off, or the path of a kubeconfig',
        'where Device and DiscoveryConfig objects live: auto = the cluster when the agent runs in one (service ' +
          'account) or $KUBECONFIG is set, else the local store; off = the local store; or a kubeconfig path',
      ),
    }),
  },
  { additionalProperties: false },
);

export type RawAgentConfig = Static<typeof AgentConfigSchema>;
