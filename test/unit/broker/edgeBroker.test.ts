import { afterEach, describe, expect, it, vi } from 'vitest';
import { Authorizer } from '../../../src/broker/auth.js';
import { EdgePersistence } from '../../../src/broker/delivery.js';
import { EdgeBroker } from '../../../src/broker/edgeBroker.js';
import { openDb } from '../../../src/store/db.js';
import { silentLogger } from '../../../src/util/logger.js';
import { tempDir } from '../../helpers/processes.js';
import { RawClient } from '../../helpers/rawMqtt.js';

describe('edge broker', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function startBroker() {
    const dir = tempDir('lb-edge-broker-');
    const db = openDb(dir.path, { synchronous: 'normal' });
    const broker = new EdgeBroker({
      db,
      logger: silentLogger(),
      authorizer: new Authorizer({ allowAnonymous: true, devices: [], users: [] }),
      ingest: async () => {},
      maxPacketSize: 1024 * 1024,
      rateLimit: { messagesPerSecond: 1000, burst: 1000 },
    });
    const { port } = await broker.start({ host: '127.0.0.1', port: 0 });
    cleanups.push(
      () => dir.remove(),
      () => db.close(),
      () => broker.stop(),
    );
    const queuedRows = () =>
      (db.prepare('SELECT count(*) AS n FROM broker_outgoing').get() as { n: number }).n;
    return { port, queuedRows };
  }

  // aedes 2.0.0-beta.1 (lib/handlers/publish.js, enqueuePublish, `case 1`) writes the PUBACK of a QoS 1
  // PUBLISH before it publishes the message, and so before the message is queued for persistent sessions.
  // An agent killed between the two had acknowledged a message that no offline session would ever get: the
  // loss of fault test (f). A slow queue write here stands for the kill landing in that window.
  it('acknowledges a QoS 1 PUBLISH only once it is queued for an offline persistent session', async () => {
    const { port, queuedRows } = await startBroker();
    const pod = await RawClient.connect(port, 4, { clientId: 'pod-view', clean: false });
    expect(await pod.subscribe([{ topic: 'devices/#', qos: 1 }])).toEqual([1]);
    await pod.disconnect();

    const enqueue = EdgePersistence.prototype.outgoingEnqueueCombi;
    vi.spyOn(EdgePersistence.prototype, 'outgoingEnqueueCombi').mockImplementation(async function (
      this: EdgePersistence,
      ...args: Parameters<typeof enqueue>
    ) {
      await new Promise((r) => setTimeout(r, 200));
      return enqueue.apply(this, args);
    });
    const device = await RawClient.connect(port, 4, { clientId: 'dev-0', clean: true });
    cleanups.push(() => device.destroy());
    const before = queuedRows();
    expect(
      await device.publish({ topic: 'devices/dev-0/telemetry/t', payload: Buffer.from('1'), qos: 1 }),
    ).toBe(0);
    expect(queuedRows()).toBe(before + 1); // read as the PUBACK arrives

    const back = await RawClient.connect(port, 4, { clientId: 'pod-view', clean: false });
    cleanups.push(() => back.destroy());
    expect((await back.message('devices/dev-0/telemetry/t')).payload.toString()).toBe('1');
  });
});
