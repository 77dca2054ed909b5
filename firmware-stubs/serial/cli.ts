import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { errorMessage, LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import {
  type SerialSensorStub,
  type SerialStubMode,
  serialStubMode,
  startSerialSensorStub,
} from './sensorStub.js';

export const simulateSerialUsage = `usage: leafbridge simulate serial [options]
  --dir DIR         directory for the device symlinks (default: ${tmpdir()})
  --count N         how many devices (default 1)
  --name PREFIX     symlink name prefix; devices are PREFIX0, PREFIX1, ... (default ttyLB)
  --model MODEL     model in the ID? reply (default TH-100)
  --serial PREFIX   serial numbers PREFIX-0, PREFIX-1, ... (default random)
  --mode MODE       sensor | modem | garbage (default sensor)
  --garbage         the same as --mode garbage
  --interval MS     ms between readings in sensor mode, 0 for none (default 1000)`;

interface SimulateSerialOptions {
  dir: string;
  count: number;
  name: string;
  model?: string;
  serial?: string;
  mode: SerialStubMode;
  intervalMs: number;
}

/**
 * `leafbridge simulate serial`: starts the stubs, prints one device path per line, and returns a `stop`.
 * Bad flags throw a LeafbridgeError with code `USAGE` (the CLI exits 2 with the usage text).
 */
export async function simulateSerial(
  argv: string[],
  logger: Logger,
  out: NodeJS.WritableStream = process.stdout,
): Promise<{ devicePaths: string[]; stop: () => Promise<void> }> {
  const options = parseSimulateSerialArgs(argv);
  const stubs: SerialSensorStub[] = [];
  const stop = async () => {
    await Promise.all(stubs.map((s) => s.stop()));
  };
  try {
    for (let i = 0; i < options.count; i++) stubs.push(await startStub(options, i, logger));
  } catch (err) {
    await stop();
    throw err;
  }
  for (const stub of stubs) out.write(`${stub.devicePath}\n`);
  return { devicePaths: stubs.map((s) => s.devicePath), stop };
}

function startStub(options: SimulateSerialOptions, index: number, logger: Logger): Promise<SerialSensorStub> {
  return startSerialSensorStub({
    dir: options.dir,
    name: `${options.name}${index}`,
    model: options.model,
    serial: options.serial === undefined ? undefined : `${options.serial}-${index}`,
    mode: options.mode,
    readingIntervalMs: options.intervalMs,
    logger,
  });
}

export function parseSimulateSerialArgs(argv: string[]): SimulateSerialOptions {
  const { values } = parseFlags(argv);
  const mode = values.garbage ? serialStubMode.garbage : (values.mode ?? serialStubMode.sensor);
  if (!isMode(mode)) throw usageError(`--mode must be one of ${Object.values(serialStubMode).join(', ')}`);
  return {
    dir: values.dir ?? tmpdir(),
    count: positiveInteger('--count', values.count ?? '1', 1),
    name: values.name ?? 'ttyLB',
    model: values.model,
    serial: values.serial,
    mode,
    intervalMs: positiveInteger('--interval', values.interval ?? '1000', 0),
  };
}

function parseFlags(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        dir: { type: 'string' },
        count: { type: 'string' },
        name: { type: 'string' },
        model: { type: 'string' },
        serial: { type: 'string' },
        mode: { type: 'string' },
        garbage: { type: 'boolean' },
        interval: { type: 'string' },
      },
    });
  } catch (err) {
    throw usageError(errorMessage(err));
  }
}

function isMode(value: string): value is SerialStubMode {
  return (Object.values(serialStubMode) as string[]).includes(value);
}

function positiveInteger(flag: string, text: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw usageError(`${flag} must be an integer ≥ ${min}, got "${text}"`);
  return n;
}

function usageError(problem: string): LeafbridgeError {
  return new LeafbridgeError('USAGE', `${problem}\n${simulateSerialUsage}`);
}
