import { isUtf8 } from 'node:buffer';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Logger } from '../util/logger.js';
import type { HubMetrics, TelemetrySinkOptions } from './types.js';

/** One line of the telemetry file. */
export interface TelemetryLine {
  node: string;
  device: string;
  stream: string;
  /** `utf8`: the payload as text; `base64`: anything that is not valid UTF-8. */
  encoding: 'utf8' | 'base64';
  payload: string;
  /** The edge's `lb-msg-id`, when it sent one. */
  msgId?: string;
  /** RFC 3339 with milliseconds: when the hub received it. */
  receivedAt: string;
}

/**
 * Telemetry handed on as JSON lines (one `TelemetryLine` per message), appended to a file: the hub writes
 * no telemetry to the API server. Lines are written in arrival order; when the file cannot keep up and
 * `maxBufferedBytes` are waiting, further lines are dropped and counted (`telemetryDropped`) rather than
 * buffered without bound. A write error is logged once and stops the sink (every later line is dropped).
 */
export class TelemetrySink {
  private readonly out: WriteStream;
  private readonly limit: number;
  private failed = false;

  constructor(
    options: TelemetrySinkOptions,
    private readonly metrics: HubMetrics,
    private readonly logger: Logger,
  ) {
    this.limit = options.maxBufferedBytes ?? 8 * 2 ** 20;
    this.out = createWriteStream(options.file, { flags: 'a' });
    this.out.on('error', (err) => {
      if (!this.failed) this.logger.error({ file: options.file, err: err.message }, 'telemetry sink failed');
      this.failed = true;
    });
  }

  write(line: Omit<TelemetryLine, 'encoding' | 'payload'>, payload: Buffer): void {
    if (this.failed || this.out.writableLength > this.limit) {
      this.metrics.telemetryDropped++;
      return;
    }
    const text = isUtf8(payload);
    const full: TelemetryLine = {
      node: line.node,
      device: line.device,
      stream: line.stream,
      encoding: text ? 'utf8' : 'base64',
      payload: payload.toString(text ? 'utf8' : 'base64'),
      ...(line.msgId !== undefined ? { msgId: line.msgId } : {}),
      receivedAt: line.receivedAt,
    };
    this.out.write(`${JSON.stringify(full)}\n`);
    this.metrics.telemetryWritten++;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.out.closed || this.out.destroyed) return resolve();
      this.out.end(() => resolve());
      this.out.once('error', () => resolve());
    });
  }
}
