import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../src/util/logger.js';
import { answer, type MeterModel } from './meter.js';

/** The most unanswered bytes a client may leave in the buffer before it is cut off. */
const maxBuffered = 1_024;

export interface ModbusTcpStub {
  port: number;
  host: string;
  stop(): Promise<void>;
}

/** A Modbus TCP server for the given units (unit id → meter); requests to other units are not answered. */
export async function startModbusTcpStub(options: {
  host: string;
  port: number;
  units: Map<number, MeterModel>;
  logger: Logger;
}): Promise<ModbusTcpStub> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (err) => options.logger.debug({ err: err.message }, 'modbus stub client error'));
    serveConnection(socket, options.units);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as { port: number; address: string };
  return {
    port: address.port,
    host: address.address,
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function serveConnection(socket: Socket, units: Map<number, MeterModel>): void {
  let buffer: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 7) {
      const length = buffer.readUInt16BE(4);
      if (buffer.readUInt16BE(2) !== 0 || length < 2 || length > 254) return void socket.destroy();
      if (buffer.length < 6 + length) break;
      const unitId = buffer[6] as number;
      const meter = units.get(unitId);
      if (meter)
        socket.write(frame(buffer.subarray(0, 2), unitId, answer(meter, buffer.subarray(7, 6 + length))));
      buffer = buffer.subarray(6 + length);
    }
    if (buffer.length > maxBuffered) socket.destroy();
  });
}

function frame(transactionId: Buffer, unitId: number, pdu: Buffer): Buffer {
  const header = Buffer.alloc(7);
  transactionId.copy(header, 0);
  header.writeUInt16BE(pdu.length + 1, 4);
  header[6] = unitId;
  return Buffer.concat([header, pdu]);
}
