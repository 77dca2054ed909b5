import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/size.js';
import { clusterConnection } from '../kubeclient/connection.js';
import { errorMessage } from '../util/errors.js';
import { createLogger } from '../util/logger.js';
import { runUntilSignal } from './shutdown.js';

export const HUB_USAGE = `usage: leafbridge hub --broker URL [options]

The cloud twin hub: reported twins and device presence from the edges (MQTT 5 shared subscriptions on the
cloud broker) into Device status; Device spec.desired out to the edges (retained, versioned). Runs until
SIGTERM or SIGINT.

options:
      --broker URL          the cloud broker, mqtt:// or mqtts:// (required)
      --prefix PREFIX       the edges' upstream.prefix (default leafbridge)
      --group NAME          shared-subscription group of the replicas (default leafbridge-hub)
      --client-id ID        MQTT client id, one per replica, the same across its restarts: it names the
                            replica's persistent session (default leafbridge-hub-<hostname>; in a pod the
                            hostname is the pod's name)
      --session-expiry T    how long the broker keeps a replica's session and the reports queued for it
                            while it is away (e.g. 30s, 10m, 1h; default 10m; 0 = clean session)
      --username NAME       broker user; the password comes from $LEAFBRIDGE_HUB_PASSWORD or --password-file
      --password-file FILE  a file holding the broker password
      --ca FILE             PEM CAs to trust (mqtts://)
      --cert FILE           PEM client certificate
      --key FILE            PEM client key
      --interval T          at most one status write per Device per T (e.g. 500ms, 1s; default 1s)
      --telemetry-file PATH append every telemetry message to PATH as JSON lines (default: off)
      --kubeconfig FILE     the cluster (default: the in-cluster service account, else $KUBECONFIG)
  -n, --namespace NS        the Devices' namespace (default: the kubeconfig context's, else default)
  -h, --help                this text
`;

const EXIT_USAGE = 2;

/** `leafbridge hub --broker URL [...]`: runs the twin hub until SIGTERM/SIGINT, then writes what is pending. */
export async function hubCommand(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parse>;
  try {
    values = parse(argv);
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n${HUB_USAGE}`);
    return EXIT_USAGE;
  }
  if (values.help) {
    process.stdout.write(HUB_USAGE);
    return 0;
  }
  const problem = check(values);
  if (problem) {
    process.stderr.write(`error: ${problem}\n${HUB_USAGE}`);
    return EXIT_USAGE;
  }
  const connection = await clusterConnection(values.kubeconfig ?? 'auto').catch((err: unknown) => {
    process.stderr.write(`error: cannot load the kubeconfig: ${errorMessage(err)}\n`);
    return null;
  });
  if (connection === null) return EXIT_USAGE;
  if (!connection) {
    process.stderr.write('error: no cluster: give --kubeconfig FILE, set KUBECONFIG, or run in a cluster\n');
    return EXIT_USAGE;
  }
  const logger = createLogger();
  let password: string | undefined;
  let tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;
  try {
    password = values['password-file']
      ? readFileSync(values['password-file'], 'utf8').replace(/\r?\n$/, '')
      : process.env.LEAFBRIDGE_HUB_PASSWORD;
    if (values.ca || values.cert || values.key) {
      tls = {
        ...(values.ca ? { ca: readFileSync(values.ca) } : {}),
        ...(values.cert ? { cert: readFileSync(values.cert) } : {}),
        ...(values.key ? { key: readFileSync(values.key) } : {}),
      };
    }
  } catch (err) {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    return EXIT_USAGE;
  }
  // Lazy: the hub pulls in @kubernetes/client-node (~70 MB), which other commands must not pay for.
  const { TwinHub } = await import('../hub/hub.js');
  const hub = new TwinHub({
    brokerUrl: values.broker as string,
    ...(values.username !== undefined ? { username: values.username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(tls ? { tls } : {}),
    ...(values['client-id'] ? { clientId: values['client-id'] } : {}),
    sessionExpiryS: Math.round((sessionExpiryMs(values['session-expiry']) as number) / 1000),
    ...(values.prefix ? { prefix: values.prefix } : {}),
    ...(values.group ? { group: values.group } : {}),
    kubeConfig: connection.kubeConfig,
    namespace: values.namespace ?? connection.namespace,
    intervalMs: parseDuration(values.interval) as number,
    logger,
    ...(values['telemetry-file'] ? { telemetry: { file: values['telemetry-file'] } } : {}),
  });
  process.on('uncaughtException', (err) =>
    logger.fatal({ err: err.message, stack: err.stack }, 'uncaught exception'),
  );
  process.on('unhandledRejection', (err) => logger.error({ err: String(err) }, 'unhandled rejection'));
  logger.info(
    {
      broker: values.broker,
      cluster: connection.source,
      namespace: values.namespace ?? connection.namespace,
    },
    'hub starting',
  );
  hub.start().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'hub start failed'));
  await runUntilSignal(
    logger,
    () => hub.stop(),
    () => ({ metrics: hub.metrics }),
  );
  return 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    options: {
      broker: { type: 'string' },
      prefix: { type: 'string' },
      group: { type: 'string' },
      'client-id': { type: 'string' },
      'session-expiry': { type: 'string', default: '10m' },
      username: { type: 'string' },
      'password-file': { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      interval: { type: 'string', default: '1s' },
      'telemetry-file': { type: 'string' },
      kubeconfig: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
}

/** The first thing wrong with the options, worded for the user. */
function check(v: ReturnType<typeof parse>): string | undefined {
  if (!v.broker) return '--broker is required';
  if (!/^mqtts?:\/\/[^\s/?#]+(:\d{1,5})?\/?$/.test(v.broker))
    return `--broker ${v.broker}: must be an mqtt:// or mqtts:// URL`;
  if (v.prefix !== undefined && !/^[^/+#\s]+(\/[^/+#\s]+)*$/.test(v.prefix))
    return `--prefix ${v.prefix}: must be one or more topic levels without wildcards`;
  if (v.group !== undefined && !/^[^/+#\s]+$/.test(v.group))
    return `--group ${v.group}: must be one topic level without wildcards`;
  const interval = parseDuration(v.interval);
  if (interval === undefined || interval < 10 || interval > 3_600_000)
    return `--interval ${v.interval}: use a duration from 10ms to 1h, e.g. 500ms or 1s`;
  if (v['client-id'] !== undefined && !/^[\x21-\x7e]{1,128}$/.test(v['client-id']))
    return `--client-id ${v['client-id']}: use 1 to 128 printable ASCII characters without spaces`;
  const expiry = sessionExpiryMs(v['session-expiry']);
  if (expiry === undefined || (expiry !== 0 && expiry < 1000) || expiry > 7 * 86_400_000)
    return `--session-expiry ${v['session-expiry']}: use 0 or a duration from 1s to 7d, e.g. 10m`;
  if (v.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v.namespace))
    return `--namespace ${v.namespace}: not a namespace name`;
  return undefined;
}

/** `--session-expiry`: a duration, or a bare 0 for a clean session. */
function sessionExpiryMs(value: string | undefined): number | undefined {
  return value?.trim() === '0' ? 0 : parseDuration(value ?? '');
}
