import { parseArgs } from 'node:util';
import { parseHostPort } from '../config/load.js';
import { parseDuration } from '../config/size.js';
import type { HealthServer } from '../controller/healthServer.js';
import { PodSecurityAllowance } from '../controller/podSecurity.js';
import { type ClusterConnection, clusterConnection } from '../kubeclient/connection.js';
import { electionTimingProblems } from '../kubeclient/leaderElection.js';
import { errorMessage } from '../util/errors.js';
import { createLogger, type Logger } from '../util/logger.js';
import { exitUnlessStoppedWithin } from './shutdown.js';

/** The Lease the controller's replicas elect their leader on (the install's RBAC names it). */
export const CONTROLLER_LEASE = 'leafbridge-controller';

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
      --leader-elect BOOL    true: run as one of several replicas, reconciling only while holding the
                             Lease (default true); false: reconcile at once, as the only replica
      --leader-elect-lease-duration T   a leader silent for T is replaced (default 15s)
      --leader-elect-renew-deadline T   a leader that could not renew for T stops (default 10s)
      --leader-elect-retry-period T     tries to acquire or renew every T (default 2s)
      --leader-elect-resource-name NAME the Lease, in the namespace (default ${CONTROLLER_LEASE})
      --health-addr HOST:PORT           serve /healthz and /readyz there (default: none)
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
  election?: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number; lease: string };
  health?: { host: string; port: number };
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
      'leader-elect': { type: 'string', default: 'true' },
      'leader-elect-lease-duration': { type: 'string', default: '15s' },
      'leader-elect-renew-deadline': { type: 'string', default: '10s' },
      'leader-elect-retry-period': { type: 'string', default: '2s' },
      'leader-elect-resource-name': { type: 'string', default: CONTROLLER_LEASE },
      'health-addr': { type: 'string' },
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
  const elect = values['leader-elect'];
  if (elect !== 'true' && elect !== 'false')
    throw new Error(`--leader-elect: expected true or false, got "${elect}"`);
  const election = {
    leaseDurationMs: duration('leader-elect-lease-duration', values['leader-elect-lease-duration']),
    renewDeadlineMs: duration('leader-elect-renew-deadline', values['leader-elect-renew-deadline']),
    retryPeriodMs: duration('leader-elect-retry-period', values['leader-elect-retry-period']),
    lease: values['leader-elect-resource-name'],
  };
  const timing = electionTimingProblems(
    election.leaseDurationMs,
    election.renewDeadlineMs,
    election.retryPeriodMs,
  );
  if (timing.length > 0) throw new Error(`--leader-elect-*: ${timing.join('; ')}`);
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(election.lease))
    throw new Error(`--leader-elect-resource-name: "${election.lease}" is not a Kubernetes object name`);
  const healthText = values['health-addr'];
  const health = healthText === undefined ? undefined : parseHostPort(healthText);
  if (healthText !== undefined && !health)
    throw new Error(`--health-addr: expected HOST:PORT such as 0.0.0.0:8081, got "${healthText}"`);
  return {
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    ...(values.namespace ? { namespace: values.namespace } : {}),
    brokerNamespace: values['broker-namespace'],
    allowance: PodSecurityAllowance.parse(values['allow-pod-security']),
    pendingTimeoutMs: duration('pending-timeout', values['pending-timeout']),
    nodeGraceMs: duration('node-grace', values['node-grace']),
    resyncMs: duration('resync', values.resync),
    ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
    ...(elect === 'true' ? { election } : {}),
    ...(health ? { health } : {}),
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
  process.on('unhandledRejection', (err) => logger.error({ err: String(err) }, 'unhandled rejection'));
  return runReplica(args, connection, logger);
}

/**
 * One replica: with leader election, a candidate that reconciles only while it holds the Lease; on losing
 * it, the controller stops every write at once and the process exits 1, so that Kubernetes starts a fresh
 * one (caches, queues and backoffs of the lost term are dropped with it, as client-go's controllers do).
 * SIGTERM or SIGINT: the work stops, then the Lease is released (another replica takes over at its next
 * try), exit 0.
 */
async function runReplica(
  args: ControllerArgs,
  connection: ClusterConnection,
  logger: Logger,
): Promise<number> {
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
  const election = args.election ? await candidate(args.election, connection, namespace, logger) : undefined;
  const elector = election?.elector;
  let stopping = false;
  const role = () => (stopping ? 'stopping' : !elector || elector.leading ? 'leader' : 'candidate');
  let health: HealthServer | undefined;
  if (args.health) {
    const { HealthServer } = await import('../controller/healthServer.js');
    health = new HealthServer(() => ({ role: role(), synced: controller.reconciling }));
    try {
      const port = await health.listen(args.health.host, args.health.port);
      logger.info({ host: args.health.host, port }, 'health endpoints listening');
    } catch (err) {
      process.stderr.write(`error: --health-addr: ${errorMessage(err)}\n`);
      return 2;
    }
  }
  logger.info(
    { source: connection.source, namespace, identity: elector?.identity, lease: args.election?.lease },
    elector ? 'controller starting as a candidate' : 'controller starting',
  );
  const signal = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const leading = () => controller.start();
  if (!elector) leading();
  // Without an election nothing ends the term but a signal.
  const term = elector ? elector.run(leading) : new Promise<never>(() => {});
  const ended = await Promise.race([signal, term]);
  stopping = true;
  if (ended === 'lost') {
    // Another replica may be leading already: no write of this one may follow.
    await controller.stop();
    election?.rest.close();
    await health?.close();
    return 1;
  }
  logger.info({ signal: ended }, 'shutting down');
  const disarm = exitUnlessStoppedWithin(logger);
  await elector?.stop();
  await controller.stop();
  await elector?.release();
  election?.rest.close();
  await health?.close();
  disarm();
  return 0;
}

/** A candidate for the controller's Lease, on a connection of its own (renewals never queue behind reconciles). */
async function candidate(
  election: NonNullable<ControllerArgs['election']>,
  connection: ClusterConnection,
  namespace: string,
  logger: Logger,
) {
  const { KubeRest } = await import('../kubeclient/kubeRest.js');
  const { LeaderElector, leaderIdentity } = await import('../kubeclient/leaderElection.js');
  // A renewal gets at most the renew deadline; the elector also cuts it when the deadline passes.
  const rest = new KubeRest(connection.kubeConfig, { timeoutMs: election.renewDeadlineMs });
  const elector = new LeaderElector({
    rest,
    namespace,
    name: election.lease,
    identity: leaderIdentity(),
    logger,
    leaseDurationMs: election.leaseDurationMs,
    renewDeadlineMs: election.renewDeadlineMs,
    retryPeriodMs: election.retryPeriodMs,
  });
  return { elector, rest };
}
