/**
 * Example broker for OPC UA PLCs: follows variables of the PLC a leafbridge Device gives this pod, logging each
 * change as a JSON line and, with MQTT_BROKER_URL, publishing it as the Device's telemetry on the agent's edge
 * broker. See examples/README.md.
 *
 * Environment: the Device's properties (OPCUA_ENDPOINT_URL, OPCUA_SECURITY_MODE, OPCUA_SECURITY_POLICY,
 * OPCUA_<browse path name>, LEAFBRIDGE_DEVICES) and READ_NODES (required: `[name=]/Objects/1:Plant/1:Temperature`
 * or `[name=]ns=1;i=1001`, separated by commas), SAMPLING_INTERVAL_MS (1000), PKI_DIR, ACCEPT_UNKNOWN_CERTIFICATES,
 * OPCUA_USERNAME, OPCUA_PASSWORD, MQTT_BROKER_URL, MQTT_DEVICE_ID, MQTT_USERNAME, MQTT_PASSWORD.
 */
import { pino } from 'pino';
import { followPlc, PlcError } from './plcClient.js';
import { ValuePublisher } from './publisher.js';
import { loadSettings, type PlcSettings, SettingsError } from './settings.js';

const logger = pino({ base: { broker: 'opcua' } });

async function main(): Promise<number> {
  let settings: PlcSettings;
  try {
    settings = loadSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    logger.error({ err: err.message }, 'bad settings');
    return 2;
  }
  const log = logger.child({ device: settings.device });
  log.info(
    { endpointUrl: settings.endpointUrl, securityMode: settings.securityMode, identity: settings.identity },
    'connecting to the PLC',
  );
  const publisher = settings.mqtt && new ValuePublisher(settings.mqtt, log);
  let close: () => Promise<void>;
  try {
    close = await followPlc(settings, log, (value) => {
      log.info(value, 'value');
      publisher?.publish(value);
    });
  } catch (err) {
    if (!(err instanceof PlcError)) throw err;
    log.error({ err: err.message, code: err.code }, 'cannot follow the PLC');
    await publisher?.close();
    return 1;
  }
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info({ signal }, 'stopping');
  await close();
  await publisher?.close();
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // node-opcua may leave timers behind after disconnect; the work is done.
    setTimeout(() => process.exit(), 1_000).unref();
  },
  (err: Error) => {
    logger.fatal({ err: err.message, stack: err.stack }, 'opcua broker failed');
    process.exit(1);
  },
);
