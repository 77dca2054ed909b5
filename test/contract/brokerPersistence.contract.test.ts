import assert from 'node:assert';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { SqlitePersistence } from '../../src/broker/persistence.js';
import { type Db, openDb } from '../../src/database/db.js';
import { tempDir } from '../helpers/processes.js';

/**
 * aedes-persistence's own abstract suite (abstract.js, written for node:test) run against the broker's
 * SQLite persistence, case by case as vitest tests. On top of each case's own assertions, before the case
 * destroys its instance, a second instance loads the same database (an agent restart) and must hold the
 * same outgoing queues, incoming QoS 2 packets, subscriptions, retained messages and wills.
 */

// Cases of the abstract suite we do not run, with the reason. Empty: every case runs.
const SKIPPED: Record<string, string> = {};

type Assertions = Record<string, (...args: unknown[]) => void>;
interface NodeTestContext {
  plan(count: number): void;
  assert: Assertions;
  diagnostic(message: string): void;
}
type Case = (t: NodeTestContext) => Promise<void>;

const require = createRequire(import.meta.url);
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: {
  test: (name: string, fn: Case) => void;
  persistence: () => Promise<unknown>;
  testAsync: boolean;
}) => void;

const cases: { name: string; fn: Case }[] = [];
const dirs: { remove(): void }[] = [];
const dbs: Db[] = [];

abstractPersistence({
  test: (name, fn) => cases.push({ name, fn }),
  persistence: async () => {
    const dir = tempDir('lb-persist-');
    dirs.push(dir);
    const db = openDb(dir.path, { synchronous: 'normal' });
    dbs.push(db);
    return checkedOnDestroy(new SqlitePersistence(db), db);
  },
  testAsync: true,
});

describe("broker persistence: aedes-persistence's abstract suite", () => {
  afterAll(() => {
    for (const db of dbs) db.close();
    for (const dir of dirs) dir.remove();
  });

  it('collected the suite', () => {
    expect(cases.length).toBeGreaterThan(40);
  });

  for (const { name, fn } of cases) {
    const skipped = SKIPPED[name];
    if (skipped) it.skip(`${name} (skipped: ${skipped})`, () => {});
    else it(name, () => runCase(fn));
  }
});

/** Runs one node:test case: `t.assert` is node:assert, counted against `t.plan` as node:test does. */
async function runCase(fn: Case): Promise<void> {
  let planned: number | undefined;
  let count = 0;
  const counted: Assertions = {};
  for (const [key, value] of Object.entries(assert)) {
    if (typeof value !== 'function') continue;
    counted[key] = (...args: unknown[]) => {
      count++;
      (value as (...a: unknown[]) => void)(...args);
    };
  }
  await fn({ plan: (n) => (planned = n), assert: counted, diagnostic: () => {} });
  if (planned !== undefined) expect(count, 'assertions made against t.plan').toBe(planned);
}

/** `instance`, whose destroy() first compares it with a fresh instance loaded from the same database. */
function checkedOnDestroy(instance: SqlitePersistence, db: Db): SqlitePersistence {
  const clients = new Set<string>();
  const live = instance as unknown as Record<string, unknown>;
  const destroy = instance.destroy.bind(instance);
  return new Proxy(instance, {
    get(target, key) {
      if (key === 'destroy')
        return async () => {
          await expectSameState(instance, db, clients);
          await destroy();
        };
      const value = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      const call = (args: unknown[]) => {
        for (const a of args) noteClients(a, clients);
        return (live[key as string] as (...a: unknown[]) => unknown).apply(target, args);
      };
      // The suite checks that setup() is an AsyncFunction: keep each method's kind.
      return value.constructor.name === 'AsyncFunction'
        ? async (...args: unknown[]) => call(args)
        : (...args: unknown[]) => call(args);
    },
  });
}

function noteClients(arg: unknown, into: Set<string>): void {
  for (const item of Array.isArray(arg) ? arg : [arg]) {
    if (typeof item !== 'object' || item === null) continue;
    const { id, clientId } = item as { id?: unknown; clientId?: unknown };
    if (typeof clientId === 'string') into.add(clientId);
    else if (typeof id === 'string' && !('cmd' in item)) into.add(id);
  }
}

async function expectSameState(live: SqlitePersistence, db: Db, clients: Set<string>): Promise<void> {
  const reloaded = new SqlitePersistence(db);
  await reloaded.setup({ id: 'broker-after-restart', counter: 0 });
  for (const id of clients) {
    const client = { id };
    expect(shape(await read(reloaded.outgoingStream(client))), `outgoing queue of ${id}`).toEqual(
      shape(await read(live.outgoingStream(client))),
    );
    expect(await reloaded.subscriptionsByClient(client), `subscriptions of ${id}`).toEqual(
      await live.subscriptionsByClient(client),
    );
    expect((await reloaded.getWill(client))?.topic, `will of ${id}`).toEqual(
      (await live.getWill(client))?.topic,
    );
  }
  expect(shape(await read(reloaded.createRetainedStream('#'))), 'retained').toEqual(
    shape(await read(live.createRetainedStream('#'))),
  );
  expect(await reloaded.countOffline(), 'offline counts').toEqual(await live.countOffline());
}

async function read(stream: Readable): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  for await (const item of stream) items.push(item as Record<string, unknown>);
  return items;
}

/** What a packet carries on the wire and in the queue, without object identity or undefined fields. */
function shape(packets: Record<string, unknown>[]) {
  return packets.map((p) =>
    Object.fromEntries(
      ['cmd', 'topic', 'payload', 'qos', 'retain', 'messageId', 'brokerId', 'brokerCounter', 'properties']
        .filter((k) => p[k] !== undefined)
        .map((k) => [k, Buffer.isBuffer(p[k]) ? (p[k] as Buffer).toString('hex') : p[k]]),
    ),
  );
}
