import type { Db } from '../database/db.js';

export interface PendingCommand {
  id: string;
  device: string;
  name: string;
  payload: Buffer;
  correlation: Buffer;
  expires: number;
}

/** Commands from the cloud waiting for their device: kept until a result arrives or they expire. */
export class CommandStore {
  private readonly q;
  constructor(db: Db) {
    this.q = {
      add: db.prepare(
        'INSERT OR IGNORE INTO commands (id, device, name, payload, correlation, expires, created) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      forDevice: db.prepare(
        'SELECT id, device, name, payload, correlation, expires FROM commands WHERE device = ? AND expires > ? ORDER BY created',
      ),
      byCorrelation: db.prepare(
        'SELECT id, device, name, payload, correlation, expires FROM commands WHERE device = ? AND name = ? AND correlation = ?',
      ),
      oldestByName: db.prepare(
        'SELECT id, device, name, payload, correlation, expires FROM commands WHERE device = ? AND name = ? ORDER BY created LIMIT 1',
      ),
      remove: db.prepare('DELETE FROM commands WHERE id = ?'),
      expired: db.prepare(
        'DELETE FROM commands WHERE expires <= ? RETURNING id, device, name, payload, correlation, expires',
      ),
    };
  }

  /** Returns false when the command was already stored (a redelivery from upstream). */
  add(cmd: PendingCommand, now = Date.now()): boolean {
    return (
      this.q.add.run(cmd.id, cmd.device, cmd.name, cmd.payload, cmd.correlation, cmd.expires, now).changes > 0
    );
  }

  pendingFor(device: string, now = Date.now()): PendingCommand[] {
    return this.q.forDevice.all(device, now) as PendingCommand[];
  }

  /** A result arrived: the command it answers (by correlation data, else the oldest of that name) is done. */
  complete(device: string, name: string, correlation: Buffer | undefined): PendingCommand | undefined {
    const row = (
      correlation
        ? this.q.byCorrelation.get(device, name, correlation)
        : this.q.oldestByName.get(device, name)
    ) as PendingCommand | undefined;
    if (row) this.q.remove.run(row.id);
    return row;
  }

  takeExpired(now = Date.now()): PendingCommand[] {
    return this.q.expired.all(now) as PendingCommand[];
  }
}
