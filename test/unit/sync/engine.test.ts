import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { OutgoingMessage } from '../../../src/broker/edgeBroker.js';
import { openDb } from '../../../src/database/db.js';
import { CommandStore } from '../../../src/sync/commands.js';
import { SyncEngine } from '../../../src/sync/engine.js';
import { TwinStore } from '../../../src/sync/twins.js';
import { createLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/wait.js';

describe('SyncEngine and its edge publisher', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c();
  });

  function engine() {
    const dir = tempDir();
    const db = openDb(dir.path, { synchronous: 'normal' });
    const lines: { msg: string; topic?: string }[] = [];
    const logger = createLogger({
      level: 'debug',
      destination: new Writable({
        write(chunk, _enc, cb) {
          for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
          cb();
        },
      }),
    });
    const e = new SyncEngine({
      logger,
      outbox: undefined,
      twins: new TwinStore(db),
      commands: new CommandStore(db),
      commandTtlMs: 60_000,
    });
    cleanups.push(() => {
      e.stop();
      db.close();
      dir.remove();
    });
    return { engine: e, lines };
  }

  it('publishes through the edge given at start; before it, a command is kept and the skipped publish logged', async () => {
    const { engine: e, lines } = engine();
    const payload = Buffer.from('{"delay":1}');
    e.downstream({ kind: 'command', device: 'd1', name: 'reboot' }, payload, {});
    expect(lines.map((l) => [l.msg, l.topic])).toContainEqual([
      'edge publish before the engine started: not sent',
      'devices/d1/commands/reboot',
    ]);
    const sent: OutgoingMessage[] = [];
    e.start({ publish: async (m) => void sent.push(m) });
    // The device subscribes: the command kept before the start reaches it through the edge.
    e.onSubscribed({ kind: 'device', device: 'd1', username: 'd1' }, ['devices/d1/commands/+']);
    await until(() => sent.length === 1, 2_000, 'the kept command');
    expect(sent[0]).toMatchObject({ topic: 'devices/d1/commands/reboot', payload, qos: 1 });
    e.downstream({ kind: 'desired', device: 'd1' }, Buffer.from('{"rate":5,"$version":1}'), {});
    expect(sent.slice(1).map((m) => [m.topic, m.retain])).toEqual([
      ['devices/d1/twin/desired', true],
      ['devices/d1/twin/delta', true],
    ]);
  });
});
