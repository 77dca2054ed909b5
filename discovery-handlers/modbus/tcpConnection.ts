import { connect, type Socket } from 'node:net';
import type { Clock } from '../../src/util/clock.js';
import { errorMessage } from '../../src/util/errors.js';
import { ModbusError, modbusErrorCode } from './errors.js';
import { type Adu, encodeAdu, takeAdu } from './mbap.js';

/** One request/reply exchange with a unit; the probe speaks to TCP (and later RTU) through this. */
export interface ModbusTransport {
  request(unitId: number, pdu: Buffer, timeoutMs: number): Promise<Buffer>;
  close(): void;
}

interface Pending {
  transactionId: number;
  unitId: number;
  resolve(pdu: Buffer): void;
  reject(err: ModbusError): void;
}

/**
 * A Modbus TCP client connection that sends one request at a time and matches the reply by transaction
 * and unit id. Any reply that breaks the framing or does not match fails the request and drops the
 * connection: after garbage, the byte stream cannot be trusted to line up again.
 */
export class TcpConnection implements ModbusTransport {
  private buffer: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  private nextTransaction = 1;
  private failure: ModbusError | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly clock: Clock,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new ModbusError(modbusErrorCode.connection, err.message, { cause: err })),
    );
    socket.on('close', () => this.fail(new ModbusError(modbusErrorCode.connection, 'connection closed')));
  }

  static open(host: string, port: number, timeoutMs: number, clock: Clock): Promise<TcpConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = clock.setTimeout(() => {
        socket.destroy();
        reject(new ModbusError(modbusErrorCode.timeout, `connect to ${host}:${port} timed out`));
      }, timeoutMs);
      socket.once('connect', () => {
        clock.clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        resolve(new TcpConnection(socket, clock));
      });
      socket.on('error', (err) => {
        clock.clearTimeout(timer);
        reject(new ModbusError(modbusErrorCode.connection, errorMessage(err), { cause: err }));
      });
    });
  }

  request(unitId: number, pdu: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error('TcpConnection: one request at a time'));
    const transactionId = this.nextTransaction;
    this.nextTransaction = (this.nextTransaction % 0xffff) + 1;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending = undefined;
        // A late reply would carry this transaction id; the next request's id differs, so it is dropped.
        reject(new ModbusError(modbusErrorCode.timeout, `unit ${unitId} did not answer in ${timeoutMs} ms`));
      }, timeoutMs);
      const settle = () => {
        this.clock.clearTimeout(timer);
        this.pending = undefined;
      };
      this.pending = {
        transactionId,
        unitId,
        resolve: (reply) => {
          settle();
          resolve(reply);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      };
      this.socket.write(encodeAdu(transactionId, unitId, pdu));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    try {
      for (let taken = takeAdu(this.buffer); taken; taken = takeAdu(this.buffer)) {
        this.buffer = taken.rest;
        this.deliver(taken.adu);
      }
    } catch (err) {
      this.fail(err as ModbusError);
      this.socket.destroy();
    }
  }

  private deliver(adu: Adu): void {
    const pending = this.pending;
    if (!pending) return; // a reply after its request timed out
    if (adu.transactionId !== pending.transactionId) return; // a late reply to an earlier request
    if (adu.unitId !== pending.unitId) {
      throw new ModbusError(
        modbusErrorCode.malformed,
        `reply from unit ${adu.unitId} to unit ${pending.unitId}`,
      );
    }
    pending.resolve(adu.pdu);
  }

  private fail(err: ModbusError): void {
    this.failure ??= err;
    this.pending?.reject(err);
  }
}
