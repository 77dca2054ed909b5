import { parseArgs } from 'node:util';
import type { Logger } from '../../src/util/logger.js';
import { type MqttSensor, startMqttSensor } from './sensor.js';

/** `leafbridge simulate mqtt-sensor --url mqtt://127.0.0.1:1883 [--count N] [--id-prefix P] [--interval MS]` */
export async function simulateMqttSensor(argv: string[], logger: Logger): Promise<{ stop(): Promise<void> }> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      count: { type: 'string', default: '1' },
      'id-prefix': { type: 'string', default: 'sensor' },
      interval: { type: 'string', default: '1000' },
      username: { type: 'string' },
      password: { type: 'string' },
    },
    strict: true,
  });
  const sensors: MqttSensor[] = [];
  for (let i = 1; i <= Number(values.count); i++) {
    sensors.push(
      await startMqttSensor({
        url: values.url,
        id: `${values['id-prefix']}-${i}`,
        intervalMs: Number(values.interval),
        ...(values.username ? { username: values.username } : {}),
        ...(values.password ? { password: values.password } : {}),
      }),
    );
  }
  logger.info({ sensors: sensors.map((s) => s.id), url: values.url }, 'mqtt sensors running');
  return { stop: async () => void (await Promise.all(sensors.map((s) => s.stop()))) };
}
