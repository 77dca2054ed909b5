import { parseArgs } from 'node:util';
import { parseDuration } from '../config/size.js';
import { PodSecurityAllowance } from '../controller/podSecurity.js';
import { clusterConnection } from '../kubeclient/connection.js';
import { errorMessage } from '../util/errors.js';
import { createLogger } from '../util/logger.js';

export const CONTROLLER_USAGE = `usage: leafbridge controller [options]

Runs the cluster-side controller: a broker Pod (or Job) and Services per Device, as its DiscoveryConfig asks.

options:
      --kubeconfig FILE      the cluster of this kubeconfig's current context (default: the in-cluster
                             service account, else $KUBECONFIG)
  -n, --namespace NS         the namespace of the Devices and DiscoveryConfigs (default: the connection's)
      --broker-namespace NS  broker Pods/Jobs/Services go there (Pod Security restricted), or to NS-baseline
                             / NS-privileged when allowed (default leafbridge-brokers)
      --allow-pod-security LEVEL=NAMESPACE/NAME
                             let that DiscoveryConfig's brokers run at baseline or privileged (repeatable)
      --pending-timeout T    replace a broker pod Pending longer than T (default 5m)
      --node-grace T         a node not Ready for T is taken out of its Devices (default 40s)
      --resync T             reconcile everything every T besides the watches (default 2m)
      --log-level LEVEL      trace | debug | info | warn | error (default: $LEAFBRIDGE_LOG_LEVEL or info)
  -h, --help                 this text
`;

interface ControllerArgs {
  kubeconfig?: string;
  namespace?: string;
  brokerNamespace: string;
  allowance: PodSecurityAllowance;
  pendingTimeoutMs: number;
  nodeGraceMs: number;
  resyncMs: number;
  logLevel?: string;
}

function parse(argv: string[]): ControllerArgs | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      'broker-namespace': { type: 'string', default: 'leafbridge-brokers' },
      'allow-pod-security': { type: 'string', multiple: true, default: [] },
      'pending-timeout': { type: 'string', default: '5m' },
      'node-grace': { type: 'string', default: '40s' },
      resync: { type: 'string', default: '2m' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return 'help';
  if (!/^[a-z0-9]([-a-z0-9]{0,43}[a-z0-9])?$/.test(values['broker-namespace']))
    throw new Error(
      `--broker-namespace: "${values['broker-namespace']}" is not a namespace name (at most 45 characters)`,
    );
  const duration = (flag: string, text: string) => {
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0)
      throw new Error(`--${flag}: expected a duration such as 30s or 5m, got "${text}"`);
    return ms;
  };
  return {
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.namespace ? { namespace: values.namespace } : {}),
    brokerNamespace: values['broker-namespace'],
    allowance: PodSecurityAllowance.parse(values['allow-pod-security']),
    pendingTimeoutMs: duration('pending-timeout', values['pending-timeout']),
    nodeGraceMs: duration('node-grace', values['node-grace']),
    resyncMs: duration('resync', values.resync),
    ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
  };
}

/**
 * `leafbridge controller [--kubeconfig FILE] [-n NS] [--pending-timeout 5m] [--node-grace 40s]`: connects
 * (in-cluster service account, else $KUBECONFIG or the flag), runs until SIGTERM or SIGINT, exits 0.
 * Exit 2 for bad arguments or no cluster to connect to. client-node and the controller are imported only
 * once the arguments are good (client-node costs ~70 MB).
 */
export async function controllerCommand(argv: string[]): Promise<number> {
  let args: ControllerArgs | 'help';
  try {
    args = parse(argv);
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n${CONTROLLER_USAGE}`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(CONTROLLER_USAGE);
    return 0;
  }
  let connection: Awaited<ReturnType<typeof clusterConnection>>;
  try {
    connection = await clusterConnection(args.kubeconfig ?? 'auto');
  } catch (err) {
    process.stderr.write(`error: cannot read the kubeconfig: ${errorMessage(err)}\n`);
    return 2;
  }
  if (!connection) {
    process.stderr.write(
      'error: no cluster: run in a pod with a service account, set KUBECONFIG, or pass --kubeconfig FILE\n',
    );
    return 2;
  }
  const logger = createLogger(args.logLevel ? { level: args.logLevel } : {});
  const namespace = args.namespace ?? connection.namespace;
  const { BrokerController } = await import('../controller/brokerController.js');
  const controller = new BrokerController({
    kubeConfig: connection.kubeConfig,
    namespace,
    brokerNamespace: args.brokerNamespace,
    allowance: args.allowance,
    logger,
    pendingTimeoutMs: args.pendingTimeoutMs,
    nodeGraceMs: args.nodeGraceMs,
    resyncMs: args.resyncMs,
  });
  process.on('unhandledRejection', (err) => logger.error({ err: String(err) }, 'unhandled rejection'));
  logger.info({ source: connection.source, namespace }, 'controller starting');
  controller.start();
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'shutting down');
  const force = setTimeout(() => {
    logger.error('shutdown took over 5 s; exiting');
    process.exit(1);
  }, 5000);
  force.unref();
  await controller.stop();
  clearTimeout(force);
  return 0;
}
