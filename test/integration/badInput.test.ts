import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { collect, connect, metric, until, within } from '../helpers/mqtt.js';
import { type AgentProcess, startAgent, stopProcess, tempDir, UpstreamBroker } from '../helpers/processes.js';

/** A minimal MQTT 3.1.1 CONNECT for client id `xy`, clean session, keepalive 60 s. */
const CONNECT = Buffer.from([0x10, 0x0e, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 2, 0x78, 0x79]);

/**
 * Sends raw bytes and resolves when the broker closes the connection (or rejects after `ms`). With
 * `connected`, a CONNECT goes first and the rest only after its CONNACK, as a real client's would.
 */
function sendRaw(
  port: number,
  chunks: Buffer[],
  what: string,
  connected = false,
  ms = 5000,
): Promise<'closed'> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => {
      if (!connected) for (const c of chunks) socket.write(c);
      else socket.write(CONNECT);
    });
    if (connected)
      socket.once('data', () => {
        for (const c of chunks) socket.write(c);
      });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`broker kept the connection open: ${what}`));
    }, ms);
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

describe('bad input is refused and contained; the agent stays up and other devices carry on', () => {
  const upstream = new UpstreamBroker();
  const dir = tempDir();
  let agent: AgentProcess;
  let edgeUrl: string;
  let http: string;

  beforeAll(async () => {
    await upstream.start(0);
    agent = await startAgent(
      dir.path,
      agentConfig(`${dir.path}/agent`, upstream.url, {
        broker: {
          listen: '127.0.0.1:0',
          maxPacketSize: '64KiB',
          rateLimit: { messagesPerSecond: 200, burst: 400 },
          refusalLogInterval: '1s',
        },
      }),
    );
    edgeUrl = `mqtt://127.0.0.1:${agent.broker.port}`;
    http = `http://127.0.0.1:${agent.http.port}`;
  });
  afterAll(async () => {
    await stopProcess(agent.child);
    await upstream.kill();
    dir.remove();
  });

  async function stillServing(): Promise<void> {
    expect(agent.child.exitCode).toBeNull();
    const sub = await collect(upstream.url, 'leafbridge/edge-1/devices/healthy/#');
    const device = await connect(edgeUrl, { clientId: 'healthy' });
    await device.publishAsync('devices/healthy/telemetry/t', 'ok', { qos: 1 });
    await until(() => sub.messages.length === 1, 5000, 'a healthy device still forwarded');
    await Promise.all([device.endAsync(), sub.client.endAsync()]);
  }

  it('malformed packets close only their own connection', async () => {
    await sendRaw(agent.broker.port, [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], 'HTTP request');
    // A PUBLISH whose remaining length has five continuation bytes (the maximum is four).
    await sendRaw(agent.broker.port, [Buffer.from([0x32, 0xff, 0xff, 0xff, 0xff, 0x7f])], 'bad length', true);
    // A PUBLISH whose topic length points past the packet.
    await sendRaw(
      agent.broker.port,
      [Buffer.from([0x30, 0x04, 0x00, 0x40, 0x61, 0x62])],
      'bad topic length',
      true,
    );
    // Random bytes.
    await sendRaw(
      agent.broker.port,
      [Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256))],
      'random bytes',
    );
    await stillServing();
  });

  it('an oversized packet is refused from its declared length, before its payload is buffered', async () => {
    // 3.1.1: announces 200 MB and sends nothing more: the broker must not wait for (or buffer) it.
    await sendRaw(agent.broker.port, [Buffer.from([0x32, 0x80, 0x80, 0x80, 0x60])], '200 MB announced', true);
    // 5: a real client publishing 100 KiB is told why: DISCONNECT 0x95 (Packet too large), as mosquitto does.
    const big = await connect(edgeUrl, { clientId: 'big' });
    let reason: number | undefined;
    big.once('disconnect', (p) => {
      reason = p.reasonCode;
    });
    const closed = new Promise<void>((r) => big.once('close', () => r()));
    big.publish('devices/big/telemetry/t', Buffer.alloc(100 * 1024), { qos: 1 });
    await within(closed, 10_000, 'the oversized PUBLISH closing the connection');
    expect(reason).toBe(0x95);
    big.end(true);
    await stillServing();
  });

  it('malformed twin and status payloads are refused with a reason string; the client stays connected (MQTT 5)', async () => {
    const device = await connect(edgeUrl, { clientId: 'tw' });
    for (const [topic, payload] of [
      ['devices/tw/twin/reported', 'not json'],
      ['devices/tw/twin/reported', '[1,2,3]'],
      ['devices/tw/twin/reported', `${'{"a":'.repeat(200)}1${'}'.repeat(200)}`],
      ['devices/tw/status', 'sleeping'],
    ] as const) {
      const err = await device.publishAsync(topic, payload, { qos: 1 }).then(
        () => undefined,
        (e: { code?: number }) => e,
      );
      expect(err?.code).toBe(0x87);
    }
    await device.publishAsync('devices/tw/twin/reported', '{"fw":"2.0"}', { qos: 1 });
    await device.endAsync();
    expect(await metric(http, 'leafbridge_broker_refused_total{reason="payload"}')).toBe(4);
  });

  it('a flooding client is throttled (refused per message, or disconnected on 3.1.1) while others carry on', async () => {
    const sub = await collect(upstream.url, 'leafbridge/edge-1/devices/calm/#');
    const calm = await connect(edgeUrl, { clientId: 'calm' });
    const flooder = await connect(edgeUrl, { clientId: 'flood' });
    let refused = 0;
    const flood = Array.from({ length: 3000 }, () =>
      flooder.publishAsync('devices/flood/telemetry/t', 'x', { qos: 1 }).catch(() => {
        refused++;
      }),
    );
    const calmSent: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++)
      calmSent.push(calm.publishAsync('devices/calm/telemetry/t', String(i), { qos: 1 }));
    await within(Promise.all([...flood, ...calmSent]), 20_000, 'every PUBACK of the flood');
    expect(refused).toBeGreaterThan(2000); // burst 400, 200/s
    await until(() => sub.messages.length === 20, 5000, 'the calm device forwarded in full');

    const flooder4 = await connect(edgeUrl, { clientId: 'flood4', protocolVersion: 4 });
    const closed = new Promise<void>((r) => flooder4.once('close', () => r()));
    for (let i = 0; i < 1000; i++) flooder4.publish('devices/flood4/telemetry/t', 'x', { qos: 1 });
    await within(closed, 10_000, 'the 3.1.1 flooder disconnected');
    flooder4.end(true);
    expect(await metric(http, 'leafbridge_broker_refused_total{reason="rate"}')).toBeGreaterThan(2000);
    await Promise.all([calm.endAsync(), flooder.endAsync(), sub.client.endAsync()]);
    await stillServing();
  });

  it('a client publishing where its ACL forbids: every refusal counted, a handful of log lines for 5,000', async () => {
    const forbidden = await connect(edgeUrl, { clientId: 'nosy' });
    const codes = await within(
      Promise.all(
        Array.from({ length: 5000 }, (_, i) =>
          forbidden.publishAsync(`devices/other-${i % 7}/twin/desired`, 'x', { qos: 1 }).then(
            () => 0,
            (err: { code?: number }) => err.code ?? -1,
          ),
        ),
      ),
      20_000,
      'every PUBACK of the forbidden flood',
    );
    await forbidden.endAsync();
    expect(codes.every((c) => c === 0x87)).toBe(true);
    expect(await metric(http, 'leafbridge_broker_refused_total{reason="publish"}')).toBe(5000);
    const lines = () =>
      agent.stdout
        .join('')
        .split('\n')
        .filter((l) => l.includes('"clientId":"nosy"'))
        .map((l) => JSON.parse(l) as { msg: string; reason: string; repeated?: number });
    // Logged at once, then summed each interval (1 s here, a minute by default): the sums add up to the count.
    await until(
      () => lines().reduce((sum, l) => sum + (l.repeated ?? 1), 0) === 5000,
      5000,
      'every refusal summed in the log',
    );
    expect(lines().length).toBeLessThanOrEqual(6);
    expect(lines()[0]).toMatchObject({
      reason: 'publish',
      msg: 'PUBLISH refused: not allowed for this client',
    });
    console.log(`5000 forbidden publishes: ${lines().length} log lines`);
    await stillServing();
  });

  it('malformed desired twins and commands from upstream are logged and dropped', async () => {
    const cloud = await connect(upstream.url);
    await cloud.publishAsync('leafbridge/edge-1/devices/d9/twin/desired', 'not json', { qos: 1 });
    await cloud.publishAsync('leafbridge/edge-1/devices/d9/twin/desired', '{"mode":"no version"}', {
      qos: 1,
    });
    await cloud.publishAsync('leafbridge/edge-1/devices/d9/twin/desired', '{"$version":1,"mode":"ok"}', {
      qos: 1,
    });
    await cloud.endAsync();
    const device = await collect(edgeUrl, 'devices/d9/twin/desired');
    await until(() => device.messages.length === 1, 5000, 'the valid desired twin');
    expect(JSON.parse(device.messages[0]!.payload.toString())).toEqual({ mode: 'ok', $version: 1 });
    await device.client.endAsync();
    expect(agent.stdout.join('')).toContain('downstream message refused');
    await stillServing();
  });
});
