import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import type { ModbusDetails } from '../../discovery-handlers/modbus/index.js';
import { modbusHandler } from '../../discovery-handlers/modbus/index.js';
import { onRtuRequests } from '../../firmware-stubs/modbus/rtuServer.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';
import { ROOT, stopProcess, waitForLine } from './processes.js';
import { until } from './wait.js';

const SERVER = join(ROOT, 'test/helpers/pymodbusServer.py');

/** Debian's pymodbus serving units 1-3 (test/helpers/pymodbusServer.py); resolves once it prints its port. */
export async function startPymodbus(): Promise<{ port: number; stop(): Promise<void> }> {
  const child: ChildProcess = spawn('/usr/bin/python3', [SERVER], { stdio: ['ignore', 'pipe', 'pipe'] });
  const port = await waitForLine(
    child,
    (line) => (typeof line.port === 'number' ? line.port : undefined),
    10_000,
  );
  return { port, stop: async () => void (await stopProcess(child)) };
}

/** The same units over Modbus RTU on `path` (one end of a pty pair). */
export async function startPymodbusRtu(path: string): Promise<{ stop(): Promise<void> }> {
  const child: ChildProcess = spawn('/usr/bin/python3', [SERVER, '--rtu', path], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForLine(child, (line) => (line.rtu === path ? true : undefined), 10_000);
  return { stop: async () => void (await stopProcess(child)) };
}

/** A socat pseudo-terminal pair linked at `a` and `b`: what one end writes, the other reads. */
export async function startPtyPair(a: string, b: string): Promise<{ stop(): Promise<void> }> {
  const child = spawn('socat', [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: 'ignore' });
  await until(() => existsSync(a) && existsSync(b), 5_000, 'socat pty links');
  return { stop: async () => void (await stopProcess(child)) };
}

/**
 * A Modbus RTU peer on a socat pty pair: the master's end is linked at `path`, and `onRequest` gets each
 * request frame (unit id, PDU) read on the other end, to answer on `port` as it likes (garbage, silence...).
 */
export async function startRtuPeer(
  path: string,
  onRequest: (port: SerialPort, unitId: number, pdu: Buffer) => void,
): Promise<{ stop(): Promise<void> }> {
  const peerEnd = `${path}.peer`;
  const pty = await startPtyPair(peerEnd, path);
  const port = new SerialPort({ path: peerEnd, baudRate: 9600, hupcl: false, autoOpen: false });
  try {
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  } catch (err) {
    await pty.stop();
    throw err;
  }
  port.on('error', () => {});
  onRtuRequests(port, (unitId, pdu) => onRequest(port, unitId, pdu));
  return {
    stop: async () => {
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
      await pty.stop();
    },
  };
}

/** A TCP server on 127.0.0.1:0 that hands every connection's bytes to `onData` (garbage, silence...). */
export async function startStub(
  onData: (socket: Socket, chunk: Buffer) => void,
): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (chunk) => onData(socket, chunk));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    stop: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The real handler's first device list for `details`, and how long it took; then discovery is stopped. */
export async function firstList(
  details: ModbusDetails,
  probeWritePaths?: readonly string[],
): Promise<{ devices: DiscoveredDevice[]; ms: number }> {
  const controller = new AbortController();
  const started = Date.now();
  const ctx = {
    logger: silentLogger(),
    clock: systemClock,
    signal: controller.signal,
    ...(probeWritePaths ? { probeWritePaths } : {}),
  };
  try {
    for await (const devices of modbusHandler.discover(details, ctx))
      return { devices, ms: Date.now() - started };
    throw new Error('discovery ended without a list');
  } finally {
    controller.abort();
  }
}
