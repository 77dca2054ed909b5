import { randomBytes } from 'node:crypto';
import { lstat, stat, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { type Clock, systemClock } from '../../src/util/clock.js';
import { errorMessage, LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { openPtyPair, type PtyPair } from './ptyPair.js';

/** How the stub behaves: a sensor (answers `ID?`, streams readings), a modem (answers AT commands), or a
 * broken device spewing random bytes without line ends. */
export const serialStubMode = { sensor: 'sensor', modem: 'modem', garbage: 'garbage' } as const;
export type SerialStubMode = (typeof serialStubMode)[keyof typeof serialStubMode];

export interface SerialSensorStubOptions {
  /** Directory the device symlink is made in. */
  dir: string;
  /** Symlink name; default `ttyLB-<serial>`. */
  name?: string;
  model?: string;
  /** Default: 8 random hex digits. */
  serial?: string;
  mode?: SerialStubMode;
  /** Interval between `T=...` readings in sensor mode; 0 for none. Default 1000 ms. */
  readingIntervalMs?: number;
  temperature?: number;
  logger: Logger;
  clock?: Clock;
  /** Stops the stub when aborted. */
  signal?: AbortSignal;
  socatPath?: string;
}

export interface SerialSensorStub {
  /** The symlink a host program opens, e.g. /tmp/lb/ttyLB-1a2b3c4d. */
  devicePath: string;
  /** The pseudo-terminal it points to. */
  nodePath: string;
  model: string;
  serial: string;
  setMode(mode: SerialStubMode): void;
  /** The device dies: its pty vanishes but the symlink stays behind, dangling. `stop()` still cleans up. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

/** Longest command line kept; longer input is dropped, as a small device's line buffer would. */
const maxLineBytes = 256;
const garbageChunkBytes = 512;
const garbageGapMs = 2;

/**
 * A serial sensor on a pseudo-terminal pair. The symlink appears only once the firmware end is open, so
 * a host that finds it can probe at once; `stop()` removes it first, like a device being unplugged.
 */
export async function startSerialSensorStub(options: SerialSensorStubOptions): Promise<SerialSensorStub> {
  const serial = options.serial ?? randomBytes(4).toString('hex').toUpperCase();
  const devicePath = join(options.dir, options.name ?? `ttyLB-${serial}`);
  await refuseLivePath(devicePath);
  const pair = await openPtyPair(options.socatPath);
  let firmware: SensorFirmware | undefined;
  try {
    const port = await openFirmwarePort(pair.firmwareEnd);
    firmware = new SensorFirmware(port, { ...options, serial, model: options.model ?? 'TH-100' });
    await symlink(pair.hostEnd, devicePath);
  } catch (err) {
    await firmware?.close();
    await pair.close();
    throw err;
  }
  return stubHandle(devicePath, pair, firmware, options);
}

function stubHandle(
  devicePath: string,
  pair: PtyPair,
  firmware: SensorFirmware,
  options: SerialSensorStubOptions,
): SerialSensorStub {
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      options.signal?.removeEventListener('abort', stop);
      await unlink(devicePath).catch(() => {});
      await firmware.close();
      await pair.close();
      options.logger.debug({ devicePath }, 'serial stub stopped');
    })();
    return stopping;
  };
  options.signal?.addEventListener('abort', stop, { once: true });
  if (options.signal?.aborted) void stop();
  options.logger.debug({ devicePath, node: pair.hostEnd, mode: firmware.mode }, 'serial stub started');
  return {
    devicePath,
    nodePath: pair.hostEnd,
    model: firmware.model,
    serial: firmware.serial,
    setMode: (mode) => firmware.setMode(mode),
    crash: async () => {
      await pair.kill();
      await firmware.close();
    },
    stop,
  };
}

/** A leftover symlink whose pty is gone (a stub killed with SIGKILL) is replaced; a live path is not. */
export async function refuseLivePath(path: string): Promise<void> {
  const exists = await lstat(path).then(
    () => true,
    () => false,
  );
  if (!exists) return;
  const live = await stat(path).then(
    () => true,
    () => false,
  );
  if (live) throw new LeafbridgeError('SERIAL_STUB_PATH_IN_USE', `${path} already exists`);
  await unlink(path);
}

function openFirmwarePort(path: string): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate: 115_200, hupcl: false, autoOpen: false });
  return new Promise((resolve, reject) => {
    port.open((err) => (err ? reject(err) : resolve(port)));
  });
}

interface FirmwareConfig extends SerialSensorStubOptions {
  serial: string;
  model: string;
}

/** The device's behaviour on its end of the pair: line commands in, replies and readings out. */
class SensorFirmware {
  mode: SerialStubMode;
  readonly serial: string;
  readonly model: string;
  private line = '';
  private writing = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: Clock;

  constructor(
    private readonly port: SerialPort,
    private readonly config: FirmwareConfig,
  ) {
    this.mode = config.mode ?? serialStubMode.sensor;
    this.serial = config.serial;
    this.model = config.model;
    this.clock = config.clock ?? systemClock;
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.on('error', (err) => config.logger.debug({ err: errorMessage(err) }, 'serial stub port error'));
    this.schedule();
  }

  setMode(mode: SerialStubMode): void {
    this.mode = mode;
    this.schedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    if (!this.port.isOpen) return;
    await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }

  private onData(chunk: Buffer): void {
    if (this.mode === serialStubMode.garbage) return;
    this.line += chunk.toString('latin1');
    const parts = this.line.split(/\r\n|\r|\n/);
    this.line = parts.pop() ?? '';
    if (this.line.length > maxLineBytes) this.line = '';
    for (const command of parts) if (command !== '') this.answer(command.trim());
  }

  private answer(command: string): void {
    const reply = this.mode === serialStubMode.modem ? modemReply(command) : this.sensorReply(command);
    this.send(Buffer.from(reply, 'latin1'));
  }

  private sensorReply(command: string): string {
    if (command === 'ID?') return `LEAFBRIDGE-SENSOR,${this.model},${this.serial}\r\n`;
    if (command === 'T?') return this.reading();
    return 'ERR\r\n';
  }

  private reading(): string {
    return `T=${(this.config.temperature ?? 21.5).toFixed(1)}\r\n`;
  }

  /** (Re)starts the mode's output loop: readings for a sensor, a stream of garbage, nothing for a modem. */
  private schedule(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed) return;
    if (this.mode === serialStubMode.garbage)
      this.timer = this.clock.setTimeout(() => this.spew(), garbageGapMs);
    const interval = this.config.readingIntervalMs ?? 1_000;
    if (this.mode === serialStubMode.sensor && interval > 0) {
      this.timer = this.clock.setTimeout(() => {
        this.send(Buffer.from(this.reading(), 'latin1'));
        this.schedule();
      }, interval);
    }
  }

  /** Random bytes with no line ends, one chunk at a time: the next waits until the last is written. */
  private spew(): void {
    this.timer = undefined;
    if (this.closed || this.mode !== serialStubMode.garbage) return;
    const chunk = randomBytes(garbageChunkBytes).map((b) => (b === 0x0a || b === 0x0d ? 0x2a : b));
    this.port.write(chunk, () => this.schedule());
  }

  /** Writes unless a write is still pending (nobody reading the other end): a stuck line drops output. */
  private send(bytes: Buffer): void {
    if (this.closed || this.writing) return;
    this.writing = true;
    this.port.write(bytes, () => {
      this.writing = false;
    });
  }
}

function modemReply(command: string): string {
  const upper = command.toUpperCase();
  if (upper === 'AT' || upper === 'ATI' || upper === 'ATZ') return 'OK\r\n';
  return 'ERROR\r\n';
}
