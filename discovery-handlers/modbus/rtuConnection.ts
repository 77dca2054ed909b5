import { SerialPort } from 'serialport';
import type { Clock } from '../../src/util/clock.js';
import { errorMessage } from '../../src/util/errors.js';
import { ModbusError, modbusErrorCode } from './errors.js';
import { crcMatches, encodeRtu, openRtu, rtuFrameLength } from './rtuFrame.js';
import type { SerialLine } from './targets.js';
import type { ModbusTransport } from './tcpConnection.js';

/**
 * A Modbus RTU master on one serial port: one request at a time, the reply framed by its function code's
 * length rules and checked by CRC. Bytes after a reply or before a request are stale and dropped, and so is
 * a sound frame from another unit; a reply that breaks the framing fails the request and the port is given
 * up for this scan.
 */
export class RtuConnection implements ModbusTransport {
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: ((chunk?: ModbusError) => void) | undefined;
  private failure: ModbusError | undefined;

  private constructor(
    private readonly port: SerialPort,
    private readonly clock: Clock,
  ) {
    port.on('data', (chunk: Buffer) => {
      if (!this.waiting) return; // nobody asked: stale
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiting();
    });
    port.on('error', (err) =>
      this.fail(new ModbusError(modbusErrorCode.connection, err.message, { cause: err })),
    );
    port.on('close', () => this.fail(new ModbusError(modbusErrorCode.connection, 'port closed')));
  }

  static open(line: SerialLine, timeoutMs: number, clock: Clock): Promise<RtuConnection> {
    const port = new SerialPort({
      path: line.path,
      baudRate: line.baudRate,
      dataBits: line.dataBits,
      parity: line.parity,
      stopBits: line.stopBits,
      hupcl: false,
      autoOpen: false,
    });
    return new Promise((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        port.once('open', () => port.close(() => {}));
        reject(new ModbusError(modbusErrorCode.timeout, `opening ${line.path} timed out`));
      }, timeoutMs);
      port.open((err) => {
        clock.clearTimeout(timer);
        if (err) reject(new ModbusError(modbusErrorCode.connection, errorMessage(err), { cause: err }));
        else resolve(new RtuConnection(port, clock));
      });
    });
  }

  request(unitId: number, pdu: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiting) return Promise.reject(new Error('RtuConnection: one request at a time'));
    this.buffer = Buffer.alloc(0);
    return new Promise<Buffer>((resolve, reject) => {
      const finish = (err?: ModbusError, reply?: Buffer) => {
        this.clock.clearTimeout(timer);
        this.waiting = undefined;
        if (err) reject(err);
        else resolve(reply as Buffer);
      };
      const timer = this.clock.setTimeout(
        () =>
          finish(
            new ModbusError(modbusErrorCode.timeout, `unit ${unitId} did not answer in ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      this.waiting = (err) => {
        if (err) return finish(err);
        try {
          const reply = this.takeReply(unitId);
          if (reply) finish(undefined, reply);
        } catch (e) {
          this.failure = e as ModbusError;
          finish(e as ModbusError);
        }
      };
      this.port.write(encodeRtu(unitId, pdu), (err) => {
        if (err) finish(new ModbusError(modbusErrorCode.connection, err.message, { cause: err }));
      });
    });
  }

  /**
   * The PDU of `unitId`'s reply once it is whole. A sound frame from another unit is skipped: on a shared
   * line that is a late answer to a request that already timed out, not a broken peer.
   */
  private takeReply(unitId: number): Buffer | undefined {
    for (;;) {
      const length = rtuFrameLength(this.buffer);
      if (length === undefined || this.buffer.length < length) return undefined;
      const frame = this.buffer.subarray(0, length);
      this.buffer = this.buffer.subarray(length);
      if (frame[0] === unitId || !crcMatches(frame)) return openRtu(frame, unitId);
    }
  }

  close(): void {
    this.port.removeAllListeners('close');
    this.port.on('error', () => {});
    if (this.port.isOpen) this.port.close(() => {});
  }

  private fail(err: ModbusError): void {
    this.failure ??= err;
    this.waiting?.(err);
  }
}
