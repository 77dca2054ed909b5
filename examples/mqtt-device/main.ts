/**
 * Example MQTT device: a simulated thermostat talking to the leafbridge agent's edge broker (docs/mqtt.md). It
 * announces itself (retained `status` and `birth`, read by the mqtt discovery handler), sends temperature
 * telemetry, follows its desired twin (`twin/desired`, retained, with `$version`) and reports on
 * `twin/reported` what it applied, what it refused and which desired version that was. See examples/README.md.
 *
 * Environment: DEVICE_ID (required), MQTT_BROKER_URL (mqtt://127.0.0.1:1883), MQTT_USERNAME, MQTT_PASSWORD.
 */
import { pino } from 'pino';
import { type DeviceOptions, Thermostat } from './device.js';

class SettingsError extends Error {
  readonly code = 'SETTINGS';
}

const logger = pino({ base: { device: process.env.DEVICE_ID } });

function optionsFromEnv(env: NodeJS.ProcessEnv): DeviceOptions {
  const id = env.DEVICE_ID ?? '';
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(id)) {
    throw new SettingsError('DEVICE_ID must be 1-128 characters of letters, digits and ._:- (a topic level)');
  }
  const url = env.MQTT_BROKER_URL || 'mqtt://127.0.0.1:1883';
  if (!/^mqtts?:\/\//.test(url))
    throw new SettingsError(`MQTT_BROKER_URL=${url}: must be mqtt:// or mqtts://`);
  return {
    id,
    url,
    username: env.MQTT_USERNAME || undefined,
    password: env.MQTT_PASSWORD || undefined,
    logger,
  };
}

async function main(): Promise<number> {
  let options: DeviceOptions;
  try {
    options = optionsFromEnv(process.env);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    logger.error({ err: err.message }, 'bad settings');
    return 2;
  }
  const thermostat = new Thermostat(options);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  logger.info({ signal }, 'stopping');
  await thermostat.stop();
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    logger.fatal({ err: err.message, stack: err.stack }, 'mqtt device failed');
    process.exitCode = 1;
  },
);
