import { simulateCamera } from '../../firmware-stubs/camera/cli.js';
import { simulateModbus } from '../../firmware-stubs/modbus/cli.js';
import { simulateMqttSensor } from '../../firmware-stubs/mqtt-sensor/cli.js';
import { simulatePlc } from '../../firmware-stubs/plc/cli.js';
import { simulateSerial } from '../../firmware-stubs/serial/cli.js';
import { createLogger, type Logger } from '../util/logger.js';

type Simulator = (argv: string[], logger: Logger) => Promise<{ stop(): Promise<void> }>;

const SIMULATORS: Record<string, Simulator> = {
  camera: simulateCamera,
  plc: simulatePlc,
  serial: (argv, logger) => simulateSerial(argv, logger),
  'mqtt-sensor': simulateMqttSensor,
  modbus: (argv, logger) => simulateModbus(argv, logger),
};

/** `leafbridge simulate camera|plc|serial|mqtt-sensor|modbus [...]`: simulated devices speaking the real protocols. */
export async function simulateCommand(argv: string[]): Promise<number> {
  const [kind, ...rest] = argv;
  const simulate = kind ? SIMULATORS[kind] : undefined;
  if (!simulate) {
    process.stderr.write(`usage: leafbridge simulate ${Object.keys(SIMULATORS).join('|')} [--help]\n`);
    return 2;
  }
  const logger = createLogger();
  let running: { stop(): Promise<void> };
  try {
    running = await simulate(rest, logger);
  } catch (err) {
    process.stderr.write(`simulate ${kind}: ${(err as Error).message}\n`);
    // 2 for bad flags, 1 for a simulator that started but could not do its job (a refused registration).
    return (err as { code?: string }).code === 'PLC_REGISTRATION' ? 1 : 2;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await running.stop();
  return 0;
}
