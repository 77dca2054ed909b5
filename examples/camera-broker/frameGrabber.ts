import { type ChildProcess, spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { type JpegFrame, JpegSplitter } from './jpeg.js';
import { redact } from './settings.js';

export interface GrabberOptions {
  ffmpeg: string;
  /** With credentials; only ever passed to ffmpeg, never logged. */
  streamUri: string;
  frameRate: number;
  stallTimeoutMs: number;
  logger: Logger;
  onFrame: (frame: JpegFrame) => void;
  /** Largest image accepted. Default 16 MiB. */
  maxFrameBytes?: number;
}

const firstDelayMs = 500;
const maxDelayMs = 30_000;
const stderrLinesKept = 5;

/** ffmpeg reads any stream it knows (RTSP with H.264, H.265 or MJPEG; HTTP MJPEG) and writes JPEGs to stdout. */
export function ffmpegArgs(streamUri: string, frameRate: number): string[] {
  const rtsp = /^rtsps?:/i.test(streamUri) ? ['-rtsp_transport', 'tcp'] : [];
  return [
    ...['-hide_banner', '-nostdin', '-loglevel', 'error'],
    ...rtsp,
    ...['-i', streamUri],
    ...['-an', '-vf', `fps=${frameRate}`, '-c:v', 'mjpeg', '-q:v', '5', '-f', 'image2pipe', 'pipe:1'],
  ];
}

/**
 * Runs ffmpeg on the stream and hands each frame to `onFrame`. When ffmpeg exits (the camera rebooted, the
 * network dropped) or no frame came for `stallTimeoutMs`, ffmpeg is started again after a delay that doubles
 * from 0.5 s up to 30 s and starts over once frames flow again.
 */
export class FrameGrabber {
  private child: ChildProcess | undefined;
  private stopped = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: GrabberOptions) {}

  start(): void {
    this.stopped = false;
    this.run();
  }

  /** Stops ffmpeg (SIGTERM, then SIGKILL after 2 s) and resolves once it has exited. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stallTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 2_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }

  private run(): void {
    const { logger } = this.o;
    const splitter = new JpegSplitter(this.o.maxFrameBytes ?? 16 * 1024 * 1024);
    const stderr: string[] = [];
    const child = spawn(this.o.ffmpeg, ffmpegArgs(this.o.streamUri, this.o.frameRate), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    if (child.pid !== undefined) logger.info({ pid: child.pid }, 'ffmpeg started');
    this.armStallTimer(child);
    child.stdout?.on('data', (chunk: Buffer) => {
      let frames: JpegFrame[];
      try {
        frames = splitter.push(chunk);
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'bad output from ffmpeg; restarting it');
        child.kill('SIGKILL');
        return;
      }
      for (const frame of frames) {
        this.failures = 0;
        this.armStallTimer(child);
        this.o.onFrame(frame);
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr.push(...redact(chunk.toString('utf8')).split('\n').filter(Boolean));
      stderr.splice(0, Math.max(0, stderr.length - stderrLinesKept));
    });
    child.on('error', (err) =>
      logger.error({ err: err.message, ffmpeg: this.o.ffmpeg }, 'ffmpeg did not start'),
    );
    child.on('close', (code, signal) => this.onExit(child, code, signal, stderr));
  }

  private onExit(child: ChildProcess, code: number | null, signal: string | null, stderr: string[]): void {
    if (this.child === child) this.child = undefined;
    clearTimeout(this.stallTimer);
    if (this.stopped) return;
    const delayMs = Math.min(maxDelayMs, firstDelayMs * 2 ** this.failures);
    this.failures += 1;
    this.o.logger.warn(
      { code, signal, stderr, retryInMs: delayMs },
      'stream ended; ffmpeg will be restarted',
    );
    this.retryTimer = setTimeout(() => this.run(), delayMs);
  }

  private armStallTimer(child: ChildProcess): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => {
      this.o.logger.warn(
        { stallTimeoutMs: this.o.stallTimeoutMs },
        'no frame for too long; restarting ffmpeg',
      );
      child.kill('SIGKILL');
    }, this.o.stallTimeoutMs);
  }
}
