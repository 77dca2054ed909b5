import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/util/password.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { collect, connect, startInProcessAgent, until } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';

describe('edge broker: durable sessions and authentication', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('keeps retained messages, subscriptions and queued QoS 1 messages across an agent restart', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const config = agentConfig(dir.path, undefined); // port 0 each time: clients reconnect to edge.url
    let edge = await startInProcessAgent(config);
    // A persistent-session subscriber (MQTT 3.1.1 and 5) subscribes, then goes away.
    for (const [clientId, protocolVersion] of [
      ['watcher-v4', 4],
      ['watcher-v5', 5],
    ] as const) {
      const w = await connect(edge.url, {
        clientId,
        clean: false,
        protocolVersion,
        ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
      });
      await w.subscribeAsync('devices/+/telemetry/#', { qos: 1 });
      await w.endAsync();
    }
    const device = await connect(edge.url, { clientId: 'd1' });
    await device.publishAsync('devices/d1/status', 'online', { qos: 1, retain: true });
    for (let i = 0; i < 5; i++) await device.publishAsync('devices/d1/telemetry/t', String(i), { qos: 1 });
    await device.endAsync();
    await edge.agent.stop();

    edge = await startInProcessAgent(config);
    cleanups.push(() => edge.agent.stop());
    for (const [clientId, protocolVersion] of [
      ['watcher-v4', 4],
      ['watcher-v5', 5],
    ] as const) {
      const got: string[] = [];
      const w = await connect(edge.url, {
        clientId,
        clean: false,
        protocolVersion,
        ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
      });
      w.on('message', (_t, p) => got.push(p.toString()));
      await until(() => got.length >= 5, 5000, `${clientId} queued messages`);
      // (watcher-v5 was also offline while watcher-v4's round published 'after': it gets that too.)
      expect(got.slice(0, 5)).toEqual(['0', '1', '2', '3', '4']);
      // The subscription itself survived: a new message arrives without subscribing again.
      const d = await connect(edge.url, { clientId: 'd1' });
      await d.publishAsync('devices/d1/telemetry/t', 'after', { qos: 1 });
      await until(() => got.includes('after'), 5000, 'message on the restored subscription');
      await Promise.all([w.endAsync(), d.endAsync()]);
    }
    const late = await collect(edge.url, 'devices/d1/status');
    await until(() => late.messages.length === 1, 5000, 'retained status');
    expect(late.messages[0]).toMatchObject({ retain: true });
    expect(late.messages[0]?.payload.toString()).toBe('online');
    await late.client.endAsync();
  });

  it('refuses wrong passwords and anonymous clients with the protocol codes; ACL refusals per version', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const hash = await hashPassword('right');
    const edge = await startInProcessAgent(
      agentConfig(dir.path, undefined, {
        auth: { allowAnonymous: false, devices: [{ id: 'cam-1', passwordHash: hash }] },
      }),
    );
    cleanups.push(() => edge.agent.stop());

    await expect(connect(edge.url, { username: 'cam-1', password: 'wrong' })).rejects.toMatchObject({
      code: 0x86,
    });
    await expect(
      connect(edge.url, { username: 'cam-1', password: 'wrong', protocolVersion: 4 }),
    ).rejects.toMatchObject({
      code: 4,
    });
    await expect(connect(edge.url, {})).rejects.toMatchObject({ code: 0x87 });

    const v5 = await connect(edge.url, { username: 'cam-1', password: 'right' });
    await v5.publishAsync('devices/cam-1/telemetry/fps', '25', { qos: 1 });
    await expect(v5.publishAsync('devices/cam-2/telemetry/fps', '25', { qos: 1 })).rejects.toMatchObject({
      code: 0x87,
    });
    const suback = await v5.subscribeAsync(['devices/cam-1/commands/+', 'devices/#'], { qos: 1 }).then(
      () => undefined,
      (err: { packet?: { granted?: number[] } }) => err.packet,
    );
    expect(suback?.granted).toEqual([1, 0x87]);
    // The v5 connection stays up after the refusals.
    await v5.publishAsync('devices/cam-1/telemetry/fps', '26', { qos: 1 });
    await v5.endAsync();

    // MQTT 3.1.1 has no negative PUBACK: the client is disconnected.
    const v4 = await connect(edge.url, { username: 'cam-1', password: 'right', protocolVersion: 4 });
    const closed = new Promise<void>((r) => v4.once('close', () => r()));
    v4.publish('devices/cam-2/telemetry/fps', '25', { qos: 1 });
    await closed;
    v4.end(true);
    const metrics = await (await fetch(`${edge.http}/metrics`)).text();
    expect(metrics).toMatch(/leafbridge_broker_refused_total\{reason="connect"\} 3/);
    expect(metrics).toMatch(/leafbridge_broker_refused_total\{reason="publish"\} 2/);
    expect(metrics).toMatch(/leafbridge_broker_refused_total\{reason="subscribe"\} 1/);
  });
});
