import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/util/logger.js';

export interface LogCapture {
  logger: Logger;
  /** Every line logged so far, parsed. */
  lines(): Array<Record<string, unknown>>;
}

/** A logger whose JSON lines the test can read back. */
export function captureLogs(level = 'info'): LogCapture {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return {
    logger: createLogger({ level, destination }),
    lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
