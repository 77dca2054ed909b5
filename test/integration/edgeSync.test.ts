import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { collect, connect, startInProcessAgent, until } from '../helpers/mqtt.js';
import { tempDir, UpstreamBroker } from '../helpers/processes.js';

const json = (v: unknown) => JSON.stringify(v);

describe('leaf → agent → upstream, and back', () => {
  const upstream = new UpstreamBroker();
  const dir = tempDir();
  let edge: Awaited<ReturnType<typeof startInProcessAgent>>;

  beforeAll(async () => {
    await upstream.start(0);
    edge = await startInProcessAgent(agentConfig(dir.path, upstream.url, { commands: { ttl: '2s' } }));
  });
  afterAll(async () => {
    await edge?.agent.stop();
    await upstream.kill();
    dir.remove();
  });

  it('mirrors telemetry, reported twins and status under {prefix}/{node}/, in order per device, each with an id', async () => {
    const sub = await collect(upstream.url, 'leafbridge/edge-1/devices/#');
    const devices = await Promise.all(['s1', 's2', 's3'].map((id) => connect(edge.url, { clientId: id })));
    await Promise.all(
      devices.map(async (d, i) => {
        for (let n = 0; n < 50; n++)
          await d.publishAsync(`devices/s${i + 1}/telemetry/temp`, String(n), { qos: 1 });
        await d.publishAsync(`devices/s${i + 1}/twin/reported`, json({ fw: '1.2' }), { qos: 1 });
        await d.publishAsync(`devices/s${i + 1}/status`, 'online', { qos: 1, retain: true });
      }),
    );
    await until(() => sub.messages.length >= 156, 10_000, 'all messages upstream');
    for (const id of ['s1', 's2', 's3']) {
      const telemetry = sub.messages.filter(
        (m) => m.topic === `leafbridge/edge-1/devices/${id}/telemetry/temp`,
      );
      expect(telemetry.map((m) => Number(m.payload.toString()))).toEqual([...Array(50).keys()]);
      const reported = sub.messages.find((m) => m.topic.endsWith(`${id}/twin/reported`));
      expect(JSON.parse(reported!.payload.toString())).toEqual({ fw: '1.2', $version: 1 });
    }
    expect(sub.messages.every((m) => /^[0-9a-f]{12}-\d+$/.test(m.msgId ?? ''))).toBe(true);
    expect(new Set(sub.messages.map((m) => m.msgId)).size).toBe(sub.messages.length);
    await Promise.all([sub.client, ...devices].map((c) => c.endAsync()));
  });

  it('stores a desired twin from upstream and serves it retained, with a delta, to a device connecting later', async () => {
    // An observer on the edge broker (not the device) sees what the agent publishes as it happens.
    const observer = await collect(edge.url, 'devices/+/twin/desired', { clientId: 'observer-desired' });
    const cloud = await connect(upstream.url);
    await cloud.publishAsync(
      'leafbridge/edge-1/devices/t1/twin/desired',
      json({ $version: 3, mode: 'eco', rate: 5 }),
      {
        qos: 1,
        retain: true,
      },
    );
    // A stale version arriving late is ignored.
    await cloud.publishAsync(
      'leafbridge/edge-1/devices/t1/twin/desired',
      json({ $version: 2, mode: 'old' }),
      { qos: 1 },
    );
    // A marker after both: once it is at the edge, so are they (one upstream session, in order).
    await cloud.publishAsync('leafbridge/edge-1/devices/mark1/twin/desired', json({ $version: 1 }), {
      qos: 1,
    });
    await until(
      () => observer.messages.some((m) => m.topic === 'devices/mark1/twin/desired'),
      5000,
      'the marker at the edge',
    );
    const t1 = observer.messages.filter((m) => m.topic === 'devices/t1/twin/desired');
    expect(t1.map((m) => JSON.parse(m.payload.toString()))).toEqual([{ mode: 'eco', rate: 5, $version: 3 }]);
    // The device connects only now.
    const device = await collect(edge.url, 'devices/t1/twin/+', { clientId: 't1' });
    await until(() => device.messages.length >= 2, 5000, 'desired and delta');
    const desired = device.messages.find((m) => m.topic === 'devices/t1/twin/desired');
    expect(desired?.retain).toBe(true);
    expect(JSON.parse(desired!.payload.toString())).toEqual({ mode: 'eco', rate: 5, $version: 3 });
    const delta = device.messages.find((m) => m.topic === 'devices/t1/twin/delta');
    expect(JSON.parse(delta!.payload.toString())).toEqual({ mode: 'eco', rate: 5, $version: 3 });
    // The device reports it reached part of it: the delta shrinks.
    device.messages.length = 0;
    await device.client.publishAsync('devices/t1/twin/reported', json({ mode: 'eco' }), { qos: 1 });
    await until(() => device.messages.some((m) => m.topic.endsWith('delta')), 5000, 'new delta');
    expect(JSON.parse(device.messages.find((m) => m.topic.endsWith('delta'))!.payload.toString())).toEqual({
      rate: 5,
      $version: 3,
    });
    await Promise.all([cloud.endAsync(), device.client.endAsync(), observer.client.endAsync()]);
  });

  it('keeps a command for an offline device, delivers it when it subscribes, and sends the result up', async () => {
    const cloud = await collect(upstream.url, 'leafbridge/edge-1/devices/c1/commands/+/result');
    const observer = await collect(edge.url, 'devices/+/commands/+', { clientId: 'observer-commands' });
    const correlationData = Buffer.from('req-42');
    await cloud.client.publishAsync('leafbridge/edge-1/devices/c1/commands/reboot', json({ delay: 1 }), {
      qos: 1,
      properties: { correlationData },
    });
    // The command is at the edge (published there while nobody of c1 listens) before the device connects:
    // what c1 gets below, the agent kept for it.
    await until(() => observer.messages.length >= 1, 5000, 'the command at the edge');
    await observer.client.endAsync();
    const device = await connect(edge.url, { clientId: 'c1' });
    const got: { payload: string; correlation?: Buffer; responseTopic?: string }[] = [];
    device.on('message', (_t, payload, packet) => {
      const p = (packet as { properties?: { correlationData?: Buffer; responseTopic?: string } }).properties;
      got.push({
        payload: payload.toString(),
        correlation: p?.correlationData,
        responseTopic: p?.responseTopic,
      });
    });
    await device.subscribeAsync('devices/c1/commands/+', { qos: 1 });
    await until(() => got.length >= 1, 5000, 'command delivered');
    expect(got[0]).toEqual({
      payload: json({ delay: 1 }),
      correlation: correlationData,
      responseTopic: 'devices/c1/commands/reboot/result',
    });
    await device.publishAsync(got[0]!.responseTopic!, json({ status: 'ok', data: { rebooted: true } }), {
      qos: 1,
      properties: { correlationData: got[0]!.correlation! },
    });
    await until(() => cloud.messages.length >= 1, 5000, 'result upstream');
    expect(cloud.messages[0]?.correlationData).toEqual(correlationData);
    expect(JSON.parse(cloud.messages[0]!.payload.toString())).toEqual({
      status: 'ok',
      data: { rebooted: true },
    });
    await Promise.all([cloud.client.endAsync(), device.endAsync()]);
  });

  it('a 3.1.1 device’s result answers the oldest pending command of that name, with its correlation data', async () => {
    const cloud = await collect(upstream.url, 'leafbridge/edge-1/devices/c3/commands/+/result');
    const observer = await collect(edge.url, 'devices/c3/commands/+', { clientId: 'observer-c3' });
    for (const id of ['first', 'second']) {
      await cloud.client.publishAsync('leafbridge/edge-1/devices/c3/commands/reboot', json({ id }), {
        qos: 1,
        properties: { correlationData: Buffer.from(id) },
      });
    }
    await until(() => observer.messages.length >= 2, 5000, 'both commands at the edge');
    await observer.client.endAsync();
    const device = await connect(edge.url, { clientId: 'c3', protocolVersion: 4 });
    const got: string[] = [];
    device.on('message', (_t, payload) => got.push(payload.toString()));
    await device.subscribeAsync('devices/c3/commands/+', { qos: 1 });
    await until(() => got.length >= 2, 5000, 'both commands delivered');
    expect(got).toEqual([json({ id: 'first' }), json({ id: 'second' })]);
    for (const n of [1, 2]) {
      await device.publishAsync('devices/c3/commands/reboot/result', json({ status: 'ok', data: { n } }), {
        qos: 1,
      });
      await until(() => cloud.messages.length >= n, 5000, `result ${n} upstream`);
    }
    expect(cloud.messages.map((m) => m.correlationData?.toString())).toEqual(['first', 'second']);
    expect(cloud.messages.map((m) => JSON.parse(m.payload.toString()).data.n)).toEqual([1, 2]);
    await Promise.all([cloud.client.endAsync(), device.endAsync()]);
  });

  it('answers a command that outlives its TTL with an expiry error upstream', async () => {
    const cloud = await collect(upstream.url, 'leafbridge/edge-1/devices/c2/commands/+/result');
    await cloud.client.publishAsync('leafbridge/edge-1/devices/c2/commands/ping', '{}', {
      qos: 1,
      properties: { correlationData: Buffer.from('p-1') },
    });
    await until(() => cloud.messages.length >= 1, 8000, 'expiry result');
    expect(JSON.parse(cloud.messages[0]!.payload.toString())).toMatchObject({
      status: 'error',
      error: { code: 'COMMAND_EXPIRED' },
    });
    expect(cloud.messages[0]?.correlationData?.toString()).toBe('p-1');
    await cloud.client.endAsync();
  });

  it('serves /healthz, /readyz and the metrics the issue names', async () => {
    expect((await fetch(`${edge.http}/healthz`)).status).toBe(200);
    const ready = await fetch(`${edge.http}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok', upstream: 'connected' });
    const metrics = await (await fetch(`${edge.http}/metrics`)).text();
    for (const name of [
      'leafbridge_outbox_messages',
      'leafbridge_outbox_bytes',
      'leafbridge_outbox_dropped_total',
      'leafbridge_upstream_connected 1',
      'leafbridge_messages_received_total{kind="telemetry"} 150',
      'leafbridge_messages_forwarded_total',
    ]) {
      expect(metrics).toContain(name);
    }
  });
});
