import { parseArgs } from 'node:util';
import { errorMessage, LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { MeterModel } from './meter.js';
import { startModbusRtuStub } from './rtuServer.js';
import { startModbusTcpStub } from './tcpServer.js';

export const simulateModbusUsage = `usage: leafbridge simulate modbus [options]
  --host HOST       address to listen on (default 127.0.0.1)
  --port N          TCP port, 0 for any (default 5020)
  --rtu PATH        Modbus RTU on a serial line instead of TCP: a pseudo-terminal (needs socat) whose
                    other end is linked at PATH, for a master to open as its port
  --units N         unit ids 1..N, each a meter (default 2)
  --no-identity     the meters refuse Read Device Identification (43/14): found by registers only
  --vendor NAME     VendorName object (default Leafbridge Simulated)`;

/**
 * `leafbridge simulate modbus`: meters behind a Modbus TCP server, or with `--rtu` on an RTU line; prints
 * {"modbus": "tcp://host:port", ...} or {"modbus": "rtu://PATH", "pty": "/dev/pts/N", ...}.
 */
export async function simulateModbus(
  argv: string[],
  logger: Logger,
  out: NodeJS.WritableStream = process.stdout,
): Promise<{ port?: number; stop(): Promise<void> }> {
  const values = parseFlags(argv);
  const count = integer('--units', values.units ?? '2', 1, 247);
  const units = new Map<number, MeterModel>();
  for (let unitId = 1; unitId <= count; unitId++) {
    units.set(unitId, {
      vendor: values.vendor ?? 'Leafbridge Simulated',
      productCode: `LB-EM${unitId}`,
      revision: '1.0',
      // voltage (V), current (0.1 A), a serial number in two words
      registers: [230, 10 * unitId, 0x4c42, unitId],
      identification: !values['no-identity'],
    });
  }
  const unitIds = [...units.keys()];
  if (values.rtu !== undefined) {
    const line = await startModbusRtuStub({ path: values.rtu, units, logger });
    out.write(
      `${JSON.stringify({ modbus: `rtu://${line.devicePath}`, pty: line.nodePath, units: unitIds })}\n`,
    );
    return { stop: line.stop };
  }
  const stub = await startModbusTcpStub({
    host: values.host ?? '127.0.0.1',
    port: integer('--port', values.port ?? '5020', 0, 65_535),
    units,
    logger,
  });
  out.write(`${JSON.stringify({ modbus: `tcp://${stub.host}:${stub.port}`, units: unitIds })}\n`);
  return { port: stub.port, stop: stub.stop };
}

function parseFlags(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        rtu: { type: 'string' },
        units: { type: 'string' },
        vendor: { type: 'string' },
        'no-identity': { type: 'boolean' },
      },
    }).values;
  } catch (err) {
    throw usageError(errorMessage(err));
  }
}

function integer(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw usageError(`${flag} must be an integer in ${min}..${max}, got "${text}"`);
  return n;
}

function usageError(problem: string): LeafbridgeError {
  return new LeafbridgeError('USAGE', `${problem}\n${simulateModbusUsage}`);
}
