import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { analyse, readJournal, startLeafStream } from '../helpers/leafStream.js';
import { connect, metric, until } from '../helpers/mqtt.js';
import { freePort, startAgent, stopProcess, tempDir, UpstreamBroker } from '../helpers/processes.js';
import { SilentProxy } from '../helpers/proxy.js';

const DEVICES = 20;
const PER_DEVICE = 1000;

describe('faults, counted at the upstream side', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  function workspace() {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    return dir.path;
  }

  it('(a) upstream broker killed mid-stream for 3 s: every message arrives, in order per device', async () => {
    const dir = workspace();
    const journal = join(dir, 'journal.tsv');
    const upstream = new UpstreamBroker(journal);
    cleanups.push(() => upstream.kill());
    await upstream.start(await freePort());
    const agent = await startAgent(dir, agentConfig(join(dir, 'agent'), upstream.url));
    cleanups.push(() => stopProcess(agent.child));
    const http = `http://127.0.0.1:${agent.http.port}`;

    const stream = await startLeafStream(`mqtt://127.0.0.1:${agent.broker.port}`, DEVICES, PER_DEVICE, 2);
    await until(() => stream.acked.size > 4000, 20_000, 'stream under way');
    await upstream.kill('SIGKILL');
    const ackedAtKill = stream.acked.size;
    await new Promise((r) => setTimeout(r, 3000));
    expect(stream.acked.size).toBeGreaterThan(ackedAtKill); // leaves carry on while the cloud is away
    expect(await metric(http, 'leafbridge_upstream_connected')).toBe(0);
    expect(await metric(http, 'leafbridge_outbox_messages')).toBeGreaterThan(0);
    await upstream.start();
    await stream.done;
    await until(() => readJournal(journal).length >= DEVICES * PER_DEVICE, 30_000, 'all messages upstream');
    await until(
      async () => (await metric(http, 'leafbridge_outbox_messages')) === 0,
      10_000,
      'outbox drained',
    );

    const result = analyse(readJournal(journal));
    expect(stream.acked.size).toBe(DEVICES * PER_DEVICE);
    expect(result.unique.size).toBe(DEVICES * PER_DEVICE);
    expect(result.outOfOrder).toEqual([]);
    // Duplicates (resends of messages whose PUBACK died with the broker) carry the same message id.
    expect(result.distinctIds).toBe(DEVICES * PER_DEVICE);
    console.log(
      `(a) ${result.unique.size} unique, ${result.duplicates} duplicates after the upstream outage`,
    );
  });

  it('(b) agent SIGKILLed mid-stream and restarted: every message a leaf had a PUBACK for arrives', async () => {
    const dir = workspace();
    const journal = join(dir, 'journal.tsv');
    const upstream = new UpstreamBroker(journal);
    cleanups.push(() => upstream.kill());
    await upstream.start(0);
    const brokerPort = await freePort();
    const config = agentConfig(join(dir, 'agent'), upstream.url, {
      broker: { listen: `127.0.0.1:${brokerPort}` },
    });
    // The upstream is slowed by nothing, so to have a backlog at the kill the first agent runs with it cut off.
    const first = await startAgent(dir, {
      ...config,
      upstream: { url: `mqtt://127.0.0.1:${await freePort()}` },
    });
    const stream = await startLeafStream(`mqtt://127.0.0.1:${brokerPort}`, DEVICES, PER_DEVICE, 1);
    await until(() => stream.acked.size > 5000, 20_000, 'stream under way');
    await stopProcess(first.child, 'SIGKILL');
    stream.stop();
    await stream.done;
    const acked = new Set(stream.acked);
    expect(acked.size).toBeGreaterThan(5000);

    const second = await startAgent(dir, config);
    cleanups.push(() => stopProcess(second.child));
    const http = `http://127.0.0.1:${second.http.port}`;
    await until(
      async () => (await metric(http, 'leafbridge_outbox_messages')) === 0,
      30_000,
      'outbox drained',
    );
    const arrived = analyse(readJournal(journal));
    const missing = [...acked].filter((k) => !arrived.unique.has(k));
    expect(missing).toEqual([]);
    expect(arrived.outOfOrder).toEqual([]);
    console.log(
      `(b) ${acked.size} acknowledged before SIGKILL, ${arrived.unique.size} arrived, ${missing.length} missing`,
    );
  });

  it('(c) a proxy that goes silent without closing: the bridge notices within two keepalives and recovers', async () => {
    const dir = workspace();
    const journal = join(dir, 'journal.tsv');
    const upstream = new UpstreamBroker(journal);
    cleanups.push(() => upstream.kill());
    await upstream.start(0);
    const proxy = new SilentProxy(() => ({ host: '127.0.0.1', port: upstream.port }));
    cleanups.push(() => proxy.stop());
    await proxy.start();
    const keepaliveS = 2;
    const agent = await startAgent(
      dir,
      agentConfig(join(dir, 'agent'), undefined, {
        upstream: {
          url: `mqtt://127.0.0.1:${proxy.port}`,
          keepalive: `${keepaliveS}s`,
          reconnect: { minDelay: '100ms', maxDelay: '500ms' },
        },
      }),
    );
    cleanups.push(() => stopProcess(agent.child));
    const http = `http://127.0.0.1:${agent.http.port}`;
    await until(() => proxy.connections === 1, 5000, 'bridge connected through the proxy');
    const stream = await startLeafStream(`mqtt://127.0.0.1:${agent.broker.port}`, 5, 400, 10);
    await until(() => stream.acked.size > 300, 10_000, 'stream under way');

    const silencedAt = Date.now();
    proxy.silence();
    await until(() => proxy.connections === 2, keepaliveS * 2000 + 1000, 'reconnect through the proxy');
    const noticedMs = Date.now() - silencedAt;
    expect(noticedMs).toBeLessThanOrEqual(keepaliveS * 2000 + 500); // reconnect delay ≤ 500 ms on top
    await stream.done;
    await until(
      async () => (await metric(http, 'leafbridge_outbox_messages')) === 0,
      15_000,
      'outbox drained',
    );
    const arrived = analyse(readJournal(journal));
    expect(arrived.unique.size).toBe(5 * 400);
    expect(arrived.outOfOrder).toEqual([]);
    console.log(`(c) silent proxy noticed and reconnected after ${noticedMs} ms (keepalive ${keepaliveS} s)`);
  });

  it('(d) the outbox fills: drop-oldest keeps the newest, counts every drop in metrics and logs, stays up', async () => {
    const dir = workspace();
    const journal = join(dir, 'journal.tsv');
    const upstream = new UpstreamBroker(journal);
    cleanups.push(() => upstream.kill());
    const upstreamPort = await freePort();
    const entryBytes = '{"d":0,"n":100}'.length + 'devices/dev-0/telemetry/t'.length + 64;
    const agent = await startAgent(
      dir,
      agentConfig(join(dir, 'agent'), `mqtt://127.0.0.1:${upstreamPort}`, {
        outbox: { maxBytes: entryBytes * 100, overflow: 'drop-oldest' },
      }),
    );
    cleanups.push(() => stopProcess(agent.child));
    const http = `http://127.0.0.1:${agent.http.port}`;
    const stream = await startLeafStream(`mqtt://127.0.0.1:${agent.broker.port}`, 1, 1000);
    await stream.done;
    expect(stream.acked.size).toBe(1000);
    await until(
      async () => (await metric(http, 'leafbridge_outbox_dropped_total{reason="drop-oldest"}')) === 900,
      5000,
      'drops counted',
    );
    expect(await metric(http, 'leafbridge_outbox_messages')).toBe(100);
    expect(await metric(http, 'leafbridge_outbox_bytes')).toBeLessThanOrEqual(entryBytes * 100);
    expect((await fetch(`${http}/healthz`)).status).toBe(200);
    // Every drop is in the logs too: logged at once, then summed once a second.
    const droppedInLogs = () =>
      agent.stdout
        .join('')
        .split('\n')
        .filter((l) => l.includes('outbox full: messages dropped'))
        .reduce((sum, l) => sum + (JSON.parse(l) as { dropped: number }).dropped, 0);
    await until(() => droppedInLogs() === 900, 3000, 'every drop in the logs');

    await upstream.start(upstreamPort);
    await until(() => readJournal(journal).length >= 100, 10_000, 'the kept messages upstream');
    expect(readJournal(journal).map((e) => e.n)).toEqual(Array.from({ length: 100 }, (_, i) => 900 + i));
  });

  it('(d) the outbox fills: reject-new refuses with a reason code, keeps the oldest, counts the refusals', async () => {
    const dir = workspace();
    const entryBytes = '{"d":0,"n":100}'.length + 'devices/dev-0/telemetry/t'.length + 64;
    const agent = await startAgent(
      dir,
      agentConfig(join(dir, 'agent'), `mqtt://127.0.0.1:${await freePort()}`, {
        outbox: { maxBytes: entryBytes * 50, overflow: 'reject-new' },
      }),
    );
    cleanups.push(() => stopProcess(agent.child));
    const http = `http://127.0.0.1:${agent.http.port}`;
    const leaf = await connect(`mqtt://127.0.0.1:${agent.broker.port}`, { clientId: 'dev-0' });
    const codes: number[] = [];
    for (let n = 0; n < 80; n++) {
      await leaf
        .publishAsync('devices/dev-0/telemetry/t', JSON.stringify({ d: 0, n: n + 100 }), { qos: 1 })
        .then(
          () => codes.push(0),
          (err: { code?: number }) => codes.push(err.code ?? -1),
        );
    }
    await leaf.endAsync();
    expect(codes.filter((c) => c === 0)).toHaveLength(50);
    expect(codes.slice(50).every((c) => c === 0x87)).toBe(true);
    expect(await metric(http, 'leafbridge_outbox_dropped_total{reason="reject-new"}')).toBe(30);
    expect(await metric(http, 'leafbridge_outbox_messages')).toBe(50);
    expect(agent.stdout.join('')).toContain('outbox full: messages dropped');
  });
});
