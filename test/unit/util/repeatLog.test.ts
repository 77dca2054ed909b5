import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/util/logger.js';
import { RepeatLog } from '../../../src/util/repeatLog.js';
import { manualClock } from '../../helpers/manualClock.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'info', destination }) };
}

describe('RepeatLog', () => {
  it('logs the first event of a key at once, then one sum per interval, then forgets a quiet key', () => {
    const clock = manualClock();
    const { lines, logger } = capture();
    const log = new RepeatLog({ logger, clock, intervalMs: 60_000 });
    for (let i = 0; i < 5000; i++)
      log.warn('c1\0publish', { clientId: 'c1' }, { clientId: 'c1', topic: `t/${i}` }, 'PUBLISH refused');
    log.warn('c2\0publish', { clientId: 'c2' }, { clientId: 'c2', topic: 'x' }, 'PUBLISH refused');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ clientId: 'c1', topic: 't/0', msg: 'PUBLISH refused' });
    clock.advance(60_000);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ clientId: 'c1', repeated: 4999, msg: 'PUBLISH refused (repeated)' });
    expect(lines[2]).not.toHaveProperty('topic');
    log.warn('c1\0publish', { clientId: 'c1' }, { clientId: 'c1', topic: 't/again' }, 'PUBLISH refused');
    expect(lines).toHaveLength(3); // still followed: summed, not logged at once
    clock.advance(60_000);
    expect(lines[3]).toMatchObject({ clientId: 'c1', repeated: 1 });
    clock.advance(60_000); // a quiet interval: the key is forgotten
    log.warn('c1\0publish', { clientId: 'c1' }, { clientId: 'c1', topic: 't/later' }, 'PUBLISH refused');
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatchObject({ topic: 't/later' });
  });

  it('bounds the keys it follows, and flush() writes the sums not yet written', () => {
    const clock = manualClock();
    const { lines, logger } = capture();
    const log = new RepeatLog({ logger, clock, intervalMs: 1000, maxKeys: 3 });
    for (let i = 0; i < 100; i++) log.warn(`c${i}`, { clientId: `c${i}` }, { clientId: `c${i}` }, 'refused');
    log.warn('c0', { clientId: 'c0' }, { clientId: 'c0' }, 'refused');
    expect(lines).toHaveLength(3);
    log.flush();
    expect(lines.slice(3)).toEqual([
      expect.objectContaining({ clientId: 'c0', repeated: 1 }),
      expect.objectContaining({ keys: 'others', repeated: 97 }),
    ]);
  });
});
