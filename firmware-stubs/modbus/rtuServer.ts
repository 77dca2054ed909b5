import { symlink, unlink } from 'node:fs/promises';
import { SerialPort } from 'serialport';
import { crc16, withCrc16 } from '../../src/util/crc16.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { openPtyPair, refuseLivePath } from '../serial/index.js';
import { answer, type MeterModel } from './meter.js';

/** Bytes kept while looking for a request; a line that sends more without one loses the oldest. */
const maxBuffered = 512;

export interface ModbusRtuStub {
  /** The symlink a master opens as its serial port. */
  devicePath: string;
  /** The pseudo-terminal it points to (for the agent's discovery.probeWritePaths). */
  nodePath: string;
  stop(): Promise<void>;
}

/**
 * Meters on one Modbus RTU line: a socat pty pair whose host end is symlinked at `path`. Requests to
 * units not in `units` are not answered, as on a shared bus; the broadcast address 0 never is.
 */
export async function startModbusRtuStub(options: {
  path: string;
  units: Map<number, MeterModel>;
  logger: Logger;
}): Promise<ModbusRtuStub> {
  await refuseLivePath(options.path);
  const pair = await openPtyPair();
  let port: SerialPort | undefined;
  try {
    port = await openPort(pair.firmwareEnd);
    serveLine(port, options.units, options.logger);
    await symlink(pair.hostEnd, options.path);
  } catch (err) {
    if (port?.isOpen) await new Promise<void>((r) => port?.close(() => r()));
    await pair.close();
    throw err;
  }
  const opened = port;
  let stopping: Promise<void> | undefined;
  return {
    devicePath: options.path,
    nodePath: pair.hostEnd,
    stop: () => {
      stopping ??= (async () => {
        await unlink(options.path).catch(() => {});
        if (opened.isOpen) await new Promise<void>((r) => opened.close(() => r()));
        await pair.close();
      })();
      return stopping;
    },
  };
}

function openPort(path: string): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate: 9600, hupcl: false, autoOpen: false });
  return new Promise((resolve, reject) => port.open((err) => (err ? reject(err) : resolve(port))));
}

function serveLine(port: SerialPort, units: Map<number, MeterModel>, logger: Logger): void {
  port.on('error', (err) => logger.debug({ err: errorMessage(err) }, 'modbus RTU stub port error'));
  onRtuRequests(port, (unitId, pdu) => {
    const meter = units.get(unitId);
    if (meter) port.write(withCrc16(Buffer.concat([Buffer.from([unitId]), answer(meter, pdu)])));
  });
}

/** Calls `onRequest` with the unit id and PDU of every whole request frame that arrives on `port`. */
export function onRtuRequests(port: SerialPort, onRequest: (unitId: number, pdu: Buffer) => void): void {
  let buffer: Buffer = Buffer.alloc(0);
  port.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const { request, rest } = takeRtuRequest(buffer);
      buffer = rest;
      if (!request) break;
      onRequest(request[0] as number, request.subarray(1, request.length - 2));
    }
    if (buffer.length > maxBuffered) buffer = buffer.subarray(buffer.length - maxBuffered);
  });
}

/**
 * Finds the first whole request frame with a good CRC in `buffer`. RTU marks frames by silence, which a
 * pty does not keep, so the stub frames by length instead: a request's length follows from its function
 * code. Bytes that cannot start a good frame (noise, a bad CRC, a function the meters do not know) are
 * skipped one at a time until a frame lines up again.
 */
export function takeRtuRequest(buffer: Buffer): { request?: Buffer; rest: Buffer } {
  let at = 0;
  while (buffer.length - at >= 2) {
    const length = requestLength(buffer.subarray(at));
    if (length === undefined) {
      at++;
      continue;
    }
    if (buffer.length - at < length) break;
    const frame = buffer.subarray(at, at + length);
    if (crc16(frame.subarray(0, length - 2)) === frame.readUInt16LE(length - 2))
      return { request: Buffer.from(frame), rest: buffer.subarray(at + length) };
    at++;
  }
  return { rest: buffer.subarray(at) };
}

/** Whole frame lengths (address, PDU, CRC) of the requests a meter answers: 03, and 43/14. */
function requestLength(frame: Buffer): number | undefined {
  const fc = frame[1];
  if (fc === 0x03) return 8;
  if (fc === 0x2b && (frame.length < 3 || frame[2] === 0x0e)) return 7;
  return undefined;
}
