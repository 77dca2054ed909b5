import { parseArgs } from 'node:util';
import { builtinHandlers } from '../builtinHandlers.js';
import {
  DEFAULT_HANDLERS,
  defaultInstallOptions,
  type InstallOptions,
  installManifests,
  manifestsYaml,
  packageVersion,
  type Toleration,
} from '../install/manifests.js';
import { ConfigError, errorMessage } from '../util/errors.js';

export const MANIFESTS_USAGE = `usage: leafbridge manifests [options] | kubectl apply -f -

Prints the leafbridge install as Kubernetes YAML: Namespace, CRDs, RBAC, the agent's ConfigMap and
DaemonSet, the controller's Deployment and, with --hub, the twin hub's.

options:
      --namespace NS            where everything goes (default leafbridge)
      --image IMAGE             the leafbridge image (default ${defaultInstallOptions().image})
      --upstream URL            the cloud broker the agents bridge to, mqtt:// or mqtts:// (default: none)
      --handlers A,B,...        discovery handlers the agents are set up for (default ${DEFAULT_HANDLERS.join(',')}):
                                onvif runs the agent on the node's network (multicast), serial mounts
                                /dev and makes it privileged; opcua and mqtt need neither
      --external-handlers A,B,...
                                discovery handlers in their own processes (Akri's protocol) that
                                DiscoveryConfigs may name: added to the CRD, to the agent's config, and
                                /var/lib/akri (where they register) mounted into the agent
      --crds-only               print only the CRDs (for a Helm install with external handlers:
                                Helm installs the chart's crds/ as they are)
      --no-controller           leave out the controller (broker Pods/Jobs/Services per Device)
      --controller-replicas N   controller replicas: one leads on a Lease, the others stand by (default 2)
      --broker-tls-secret NAME  the edge broker's mqtts listener on port 8883, its certificate and key
                                from this kubernetes.io/tls Secret (tls.crt, tls.key), mounted read-only
      --broker-client-ca        with --broker-tls-secret: that Secret's ca.crt is the CA of the devices'
                                client certificates (docs/security.md)
      --broker-websocket ws|wss the edge broker's MQTT over WebSocket on port 8083 (wss: with the
                                certificate of --broker-tls-secret)
      --hub URL                 add the twin hub, subscribed to this cloud broker
      --hub-replicas N          hub replicas, sharing the broker's load (default 2)
      --device-plugin-dir DIR   the kubelet's device-plugin directory (default /var/lib/kubelet/device-plugins)
      --node-selector K=V,...   run agents only on nodes with these labels
      --tolerate KEY[=VALUE][:EFFECT]
                                let agents run on nodes with this taint (repeatable)
  -h, --help                    this text
`;

const EXIT_USAGE = 2;

/** `leafbridge manifests [...]`: the install as multi-document YAML on stdout. */
export async function manifestsCommand(argv: string[]): Promise<number> {
  let args: ManifestsArgs | 'help';
  try {
    args = parseManifestsArgs(argv);
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n${MANIFESTS_USAGE}`);
    return EXIT_USAGE;
  }
  if (args === 'help') {
    process.stdout.write(MANIFESTS_USAGE);
    return 0;
  }
  try {
    const objects = installManifests(builtinHandlers, args.options).filter(
      (o) => !args.crdsOnly || o.kind === 'CustomResourceDefinition',
    );
    const header = `# leafbridge ${packageVersion()}: leafbridge manifests${argv.map((a) => ` ${a}`).join('')}\n`;
    process.stdout.write(manifestsYaml(objects, header));
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.problems.map((p) => `error: ${p}\n`).join('')}${MANIFESTS_USAGE}`);
    return EXIT_USAGE;
  }
}

export interface ManifestsArgs {
  options: Partial<InstallOptions>;
  /** Print only the CustomResourceDefinitions. */
  crdsOnly: boolean;
}

/** The options the flags give (the rest default); throws on a flag that is unknown, repeated or malformed. */
export function parseManifestsArgs(argv: string[]): ManifestsArgs | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      namespace: { type: 'string' },
      image: { type: 'string' },
      upstream: { type: 'string' },
      handlers: { type: 'string' },
      'external-handlers': { type: 'string' },
      'crds-only': { type: 'boolean', default: false },
      'no-controller': { type: 'boolean', default: false },
      'controller-replicas': { type: 'string' },
      'broker-tls-secret': { type: 'string' },
      'broker-client-ca': { type: 'boolean', default: false },
      'broker-websocket': { type: 'string' },
      hub: { type: 'string' },
      'hub-replicas': { type: 'string' },
      'device-plugin-dir': { type: 'string' },
      'node-selector': { type: 'string' },
      tolerate: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  if (positionals.length > 0) throw new Error(`unexpected argument ${positionals[0]}`);
  if (values['hub-replicas'] !== undefined && values.hub === undefined)
    throw new Error('--hub-replicas needs --hub URL');
  if (values['broker-client-ca'] && values['broker-tls-secret'] === undefined)
    throw new Error('--broker-client-ca needs --broker-tls-secret NAME');
  const websocket = values['broker-websocket'];
  if (websocket !== undefined && websocket !== 'ws' && websocket !== 'wss')
    throw new Error(`--broker-websocket ${websocket}: must be ws or wss`);
  const replicas = values['hub-replicas'] ?? '2';
  if (!/^\d+$/.test(replicas)) throw new Error(`--hub-replicas ${replicas}: must be a whole number`);
  const controllerReplicas = values['controller-replicas'];
  if (controllerReplicas !== undefined && !/^\d+$/.test(controllerReplicas))
    throw new Error(`--controller-replicas ${controllerReplicas}: must be a whole number`);
  const options: Partial<InstallOptions> = {
    ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    ...(values.image !== undefined ? { image: values.image } : {}),
    ...(values.upstream !== undefined ? { upstream: values.upstream } : {}),
    ...(values.handlers !== undefined ? { handlers: list(values.handlers) } : {}),
    ...(values['external-handlers'] !== undefined
      ? { externalHandlers: list(values['external-handlers']) }
      : {}),
    controller: !values['no-controller'],
    ...(controllerReplicas !== undefined ? { controllerReplicas: Number(controllerReplicas) } : {}),
    ...(values['broker-tls-secret'] !== undefined
      ? { brokerTls: { secret: values['broker-tls-secret'], clientCa: values['broker-client-ca'] } }
      : {}),
    ...(websocket !== undefined ? { brokerWebsocket: websocket } : {}),
    ...(values.hub !== undefined ? { hub: { brokerUrl: values.hub, replicas: Number(replicas) } } : {}),
    ...(values['device-plugin-dir'] !== undefined ? { devicePluginDir: values['device-plugin-dir'] } : {}),
    ...(values['node-selector'] !== undefined ? { nodeSelector: nodeSelector(values['node-selector']) } : {}),
    ...(values.tolerate ? { tolerations: values.tolerate.map(toleration) } : {}),
  };
  return { options, crdsOnly: values['crds-only'] };
}

const list = (text: string) => text.split(',').filter((s) => s !== '');

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function nodeSelector(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of list(text)) {
    const [key = '', value, ...rest] = pair.split('=');
    if (value === undefined || rest.length > 0 || !LABEL_KEY.test(key) || !LABEL_VALUE.test(value))
      throw new Error(`--node-selector ${pair}: must be KEY=VALUE with a label key and value`);
    out[key] = value;
  }
  return out;
}

const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;

function toleration(text: string): Toleration {
  const m = /^([^=:]+)(?:=([^:]*))?(?::(.+))?$/.exec(text);
  const [, key = '', value, effect] = m ?? [];
  if (!m || !LABEL_KEY.test(key) || (value !== undefined && !LABEL_VALUE.test(value)))
    throw new Error(`--tolerate ${text}: must be KEY[=VALUE][:EFFECT]`);
  if (effect !== undefined && !(EFFECTS as readonly string[]).includes(effect))
    throw new Error(`--tolerate ${text}: the effect must be one of ${EFFECTS.join(', ')}`);
  return {
    key,
    operator: value === undefined ? 'Exists' : 'Equal',
    ...(value !== undefined ? { value } : {}),
    ...(effect !== undefined ? { effect: effect as Toleration['effect'] } : {}),
  };
}
