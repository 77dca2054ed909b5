// Interop with Debian's mosquitto broker (as the cloud side) and its command-line clients (as leaf devices and
// cloud tools). The agent runs as a real process (bin/leafbridge.js on dist/); all traffic stays on 127.0.0.1.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import {
  killClients,
  Mosquitto,
  MosquittoSub,
  mosquittoPub,
  mosquittoPubStream,
  requireMosquitto,
  type SubMessage,
  sleep,
  until,
  watchLog,
} from '../helpers/mosquitto.js';
import { connect } from '../helpers/mqtt.js';
import { type AgentProcess, CLI, startAgent, stopProcess, tempDir } from '../helpers/processes.js';

const ROOT = 'leafbridge/edge-1/';
const MSG_ID = /^[0-9a-f]{12}-\d+$/;
const text = (m: SubMessage) => m.payload.toString('utf8');
const json = (m: SubMessage | undefined) => JSON.parse(m ? text(m) : 'null') as unknown;
const lines = (n: number) => `${Array.from({ length: n }, (_, i) => String(i)).join('\n')}\n`;

/** The agent on `mosquitto` with the given upstream overrides (e.g. protocolVersion 4) and extra config. */
function config(
  dir: string,
  mosquitto: Mosquitto,
  upstream: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  const base = agentConfig(dir, mosquitto.url, extra);
  return { ...base, upstream: { ...(base.upstream as Record<string, unknown>), ...upstream } };
}

/**
 * Proves the bridge's downstream subscription is live and that everything published on mosquitto before this
 * call has been handled by the agent: mosquitto delivers to the bridge in order, so once a fresh desired twin
 * of the `probe` device shows up on the edge broker, what came before it has been processed too.
 */
let probeVersion = 0;
async function downstreamBarrier(mosquitto: Mosquitto, edgePort: number): Promise<void> {
  const sub = await MosquittoSub.start({ port: edgePort, topics: ['devices/probe/twin/desired'] });
  try {
    for (let attempt = 0; attempt < 40; attempt++) {
      const version = ++probeVersion;
      const pub = await mosquittoPub({ port: mosquitto.port }, [
        '-q',
        '1',
        '-t',
        `${ROOT}devices/probe/twin/desired`,
        '-m',
        JSON.stringify({ $version: version }),
      ]);
      expect(pub.code, pub.stderr).toBe(0);
      const end = Date.now() + 250;
      while (Date.now() < end) {
        if (sub.messages.some((m) => (json(m) as { $version?: number }).$version === version)) return;
        await sleep(20);
      }
    }
    throw new Error('the agent never relayed a desired twin from mosquitto');
  } finally {
    await sub.stop();
  }
}

/** Leaf devices: one `mosquitto_pub -l` per device, `count` QoS 1 messages 0..count-1 each, all at once. */
async function publishTelemetry(
  edgePort: number,
  devices: { id: string; version: 'mqttv5' | 'mqttv311' }[],
  count: number,
) {
  const results = await Promise.all(
    devices.map((d) =>
      mosquittoPub(
        { port: edgePort, version: d.version, clientId: d.id },
        ['-q', '1', '-t', `devices/${d.id}/telemetry/temp`, '-l'],
        lines(count),
      ),
    ),
  );
  for (const r of results) expect(r.code, r.stderr).toBe(0);
}

beforeAll(() => {
  requireMosquitto();
});
afterAll(killClients);

describe.each([
  { version: 5 as const, label: 'MQTT 5' },
  { version: 4 as const, label: 'MQTT 3.1.1' },
])('mosquitto as the upstream broker, bridge on $label', ({ version }) => {
  const mosquitto = new Mosquitto();
  const dir = tempDir();
  let agent: AgentProcess;
  let edge: number;

  beforeAll(async () => {
    await mosquitto.start();
    agent = await startAgent(dir.path, config(dir.path, mosquitto, { protocolVersion: version }));
    watchLog(agent.child);
    edge = agent.broker.port;
  });
  afterAll(async () => {
    if (agent) await stopProcess(agent.child);
    await mosquitto.stop();
    dir.remove();
  });

  it('mirrors QoS 1 telemetry from mosquitto_pub leaf clients under leafbridge/edge-1/, in order per device', async () => {
    const sub = await MosquittoSub.start({ port: mosquitto.port, topics: [`${ROOT}devices/#`] });
    const devices = [
      { id: 's1', version: 'mqttv311' as const },
      { id: 's2', version: 'mqttv5' as const },
      { id: 's3', version: 'mqttv311' as const },
    ];
    const count = 100;
    // Every PUBACK the leaf clients got means the message was in the outbox (mosquitto_pub -l exits 0 after).
    await publishTelemetry(edge, devices, count);
    await until(() => sub.messages.length >= devices.length * count, 10_000, 'all telemetry on mosquitto');
    await sleep(200); // nothing more should come
    await sub.stop();

    expect(sub.messages).toHaveLength(devices.length * count);
    for (const d of devices) {
      const got = sub.on((t) => t === `${ROOT}devices/${d.id}/telemetry/temp`);
      expect(got.map((m) => Number(text(m)))).toEqual([...Array(count).keys()]);
    }
    expect(sub.messages.every((m) => m.qos === 1 && !m.retain)).toBe(true);
    if (version === 5) {
      // Each message carries its stable id as the lb-msg-id user property, all distinct.
      expect(sub.messages.every((m) => MSG_ID.test(m.msgId ?? ''))).toBe(true);
      expect(new Set(sub.messages.map((m) => m.msgId)).size).toBe(sub.messages.length);
    } else {
      // MQTT 3.1.1 has no properties at all.
      expect(sub.messages.every((m) => m.userProperties.length === 0 && m.msgId === undefined)).toBe(true);
    }
  }, 30_000);

  it('relays a retained desired twin from mosquitto to the edge broker, retained, with a delta', async () => {
    const live = await MosquittoSub.start({ port: edge, topics: ['devices/t1/twin/+'] });
    const pub = await mosquittoPub({ port: mosquitto.port }, [
      '-r',
      '-q',
      '1',
      '-t',
      `${ROOT}devices/t1/twin/desired`,
      '-m',
      '{"$version":1,"mode":"eco"}',
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    await until(() => live.messages.length >= 2, 10_000, 'desired and delta on the edge broker');
    await live.stop();
    expect(json(live.on((t) => t === 'devices/t1/twin/desired')[0])).toEqual({ mode: 'eco', $version: 1 });
    expect(json(live.on((t) => t === 'devices/t1/twin/delta')[0])).toEqual({ mode: 'eco', $version: 1 });

    // A device subscribing afterwards still gets both, flagged retained.
    const late = await MosquittoSub.start({
      port: edge,
      version: 'mqttv311',
      topics: ['devices/t1/twin/desired', 'devices/t1/twin/delta'],
    });
    await until(() => late.messages.length >= 2, 5000, 'retained desired and delta');
    await sleep(200);
    await late.stop();
    expect(late.messages).toHaveLength(2);
    const desired = late.on((t) => t === 'devices/t1/twin/desired')[0];
    const delta = late.on((t) => t === 'devices/t1/twin/delta')[0];
    expect(desired?.retain).toBe(true);
    expect(json(desired)).toEqual({ mode: 'eco', $version: 1 });
    expect(delta?.retain).toBe(true);
    expect(json(delta)).toEqual({ mode: 'eco', $version: 1 });
  }, 30_000);
});

describe('commands from mosquitto (MQTT 5 correlation data) to a device that connects later', () => {
  const mosquitto = new Mosquitto();
  const dir = tempDir();
  let agent: AgentProcess;

  beforeAll(async () => {
    await mosquitto.start();
    agent = await startAgent(dir.path, config(dir.path, mosquitto));
    watchLog(agent.child);
    await downstreamBarrier(mosquitto, agent.broker.port);
  });
  afterAll(async () => {
    if (agent) await stopProcess(agent.child);
    await mosquitto.stop();
    dir.remove();
  });

  it('delivers a command published while the device was offline, and returns its result with the same correlation data', async () => {
    const results = await MosquittoSub.start({
      port: mosquitto.port,
      topics: [`${ROOT}devices/c1/commands/+/result`],
    });
    const pub = await mosquittoPub({ port: mosquitto.port }, [
      '-q',
      '1',
      '-t',
      `${ROOT}devices/c1/commands/reboot`,
      '-m',
      '{"delay":1}',
      '-D',
      'publish',
      'correlation-data',
      'req-42',
    ]);
    expect(pub.code, pub.stderr).toBe(0);
    await downstreamBarrier(mosquitto, agent.broker.port); // the agent holds the command; c1 is not connected

    const device = await connect(`mqtt://127.0.0.1:${agent.broker.port}`, { clientId: 'c1' });
    const got: { topic: string; payload: string; correlation?: Buffer; responseTopic?: string }[] = [];
    device.on('message', (topic, payload, packet) => {
      const p = (packet as { properties?: { correlationData?: Buffer; responseTopic?: string } }).properties;
      got.push({
        topic,
        payload: payload.toString(),
        correlation: p?.correlationData,
        responseTopic: p?.responseTopic,
      });
    });
    await device.subscribeAsync('devices/c1/commands/+', { qos: 1 });
    await until(() => got.length >= 1, 5000, 'the command on the device');
    expect(got[0]).toEqual({
      topic: 'devices/c1/commands/reboot',
      payload: '{"delay":1}',
      correlation: Buffer.from('req-42'),
      responseTopic: 'devices/c1/commands/reboot/result',
    });

    await device.publishAsync(got[0]!.responseTopic!, JSON.stringify({ status: 'ok' }), {
      qos: 1,
      properties: { correlationData: got[0]!.correlation! },
    });
    await until(() => results.messages.length >= 1, 5000, 'the result on mosquitto');
    await device.endAsync();
    await results.stop();
    const result = results.messages[0]!;
    expect(result.topic).toBe(`${ROOT}devices/c1/commands/reboot/result`);
    expect(result.correlation).toBe('req-42');
    expect(json(result)).toEqual({ status: 'ok' });
    expect(result.msgId).toMatch(MSG_ID);
    expect(got).toHaveLength(1); // delivered once
  }, 30_000);
});

describe('mosquitto killed mid-stream and restarted on the same port', () => {
  const mosquitto = new Mosquitto();
  const dir = tempDir();
  let agent: AgentProcess;
  let log: ReturnType<typeof watchLog>;

  beforeAll(async () => {
    await mosquitto.start();
    // Every reconnect attempt waits at least 1.5 s: restarting mosquitto right after a failed attempt gives
    // the test's subscriber time to be back before the agent is (mosquitto keeps no sessions here).
    agent = await startAgent(
      dir.path,
      config(dir.path, mosquitto, { reconnect: { minDelay: '1500ms', maxDelay: '2500ms' } }),
    );
    log = watchLog(agent.child);
  });
  afterAll(async () => {
    if (agent) await stopProcess(agent.child);
    await mosquitto.stop();
    dir.remove();
  });

  it('reconnects by itself and delivers everything published during the outage (distinct lb-msg-id)', async () => {
    const topics = [`${ROOT}devices/+/telemetry/#`];
    const before = await MosquittoSub.start({ port: mosquitto.port, topics });
    const stream = mosquittoPubStream({ port: agent.broker.port, version: 'mqttv311', clientId: 'r1' }, [
      '-q',
      '1',
      '-t',
      'devices/r1/telemetry/seq',
    ]);
    let n = 0;
    const ticker = setInterval(() => stream.write(String(n++)), 10);
    try {
      await until(() => before.messages.length >= 50, 5000, 'the stream flowing to mosquitto');

      // Frozen first, so messages are in flight (sent, never acknowledged) when it dies.
      mosquitto.signal('SIGSTOP');
      const frozenAt = n;
      await sleep(300);
      const down = log.next((l) => l.msg === 'upstream down', 5000);
      await mosquitto.kill('SIGKILL');
      const killedAt = n;
      await before.stop(); // it would reconnect by itself, racing the agent
      await down;
      await sleep(2500); // a few seconds without upstream; the device keeps publishing
      // Just after a failed attempt the next one is >= 1.5 s away: restart and subscribe before it.
      await log.next((l) => l.msg === 'upstream down', 5000);
      const reconnected = log.next((l) => l.msg === 'upstream connected', 10_000);
      await mosquitto.start();
      const restartedAt = n;
      const after = await MosquittoSub.start({ port: mosquitto.port, topics });
      await reconnected;
      await sleep(1000); // and a while longer with upstream back
      clearInterval(ticker);
      const total = n;
      const pub = await stream.end();
      expect(pub.code, pub.stderr).toBe(0);

      const all = () => [...before.messages, ...after.messages];
      await until(() => new Set(all().map((m) => m.msgId)).size >= total, 15_000, `${total} distinct ids`);
      await sleep(300);
      await after.stop();

      const received = all();
      expect(received.every((m) => m.topic === `${ROOT}devices/r1/telemetry/seq`)).toBe(true);
      expect(received.every((m) => MSG_ID.test(m.msgId ?? ''))).toBe(true);
      // One id per message, kept across resends.
      const idsBySeq = new Map<number, Set<string>>();
      for (const m of received) {
        const seq = Number(text(m));
        idsBySeq.set(seq, (idsBySeq.get(seq) ?? new Set()).add(m.msgId!));
      }
      expect([...idsBySeq.keys()].sort((a, b) => a - b)).toEqual([...Array(total).keys()]);
      expect([...idsBySeq.values()].every((ids) => ids.size === 1)).toBe(true);
      expect(new Set(received.map((m) => m.msgId)).size).toBe(total);
      // Whatever was published while mosquitto was frozen or down arrived after the restart.
      const afterSeqs = new Set(after.messages.map((m) => Number(text(m))));
      for (let seq = frozenAt; seq < restartedAt; seq++) expect(afterSeqs.has(seq), `seq ${seq}`).toBe(true);
      // In order: first arrivals only ever go up (a resend repeats an older one, never overtakes).
      const seen = new Set<number>();
      const firsts: number[] = [];
      for (const m of received) {
        const seq = Number(text(m));
        if (!seen.has(seq)) firsts.push(seq);
        seen.add(seq);
      }
      expect(firsts).toEqual([...Array(total).keys()]);
      const duplicates = received.length - total;
      console.info(
        `outage: ${total} published, ${killedAt - frozenAt} in flight to the frozen broker, ` +
          `${restartedAt - killedAt} while it was down, ` +
          `${received.length} received (${duplicates} duplicates)`,
      );
      expect(log.lines.some((l) => l.msg === 'upstream connected' && l.connects === 2)).toBe(true);
    } finally {
      clearInterval(ticker);
      await stream.kill();
    }
  }, 40_000);
});

describe('the edge broker, authenticating mosquitto clients', () => {
  const mosquitto = new Mosquitto();
  const dir = tempDir();
  let agent: AgentProcess;
  let edge: number;

  beforeAll(async () => {
    await mosquitto.start();
    const passwordHash = execFileSync(process.execPath, [CLI, 'hash-password', 'secret']).toString().trim();
    agent = await startAgent(
      dir.path,
      config(
        dir.path,
        mosquitto,
        {},
        { auth: { allowAnonymous: false, devices: [{ id: 'd1', passwordHash }] } },
      ),
    );
    watchLog(agent.child);
    edge = agent.broker.port;
  });
  afterAll(async () => {
    if (agent) await stopProcess(agent.child);
    await mosquitto.stop();
    dir.remove();
  });

  it('refuses a wrong password and anonymous clients at CONNECT, accepts the right password', async () => {
    const upstream = await MosquittoSub.start({ port: mosquitto.port, topics: [`${ROOT}devices/#`] });
    const args = (payload: string) => ['-q', '1', '-t', 'devices/d1/telemetry/t', '-m', payload];

    const wrong = await mosquittoPub(
      { port: edge, version: 'mqttv311', username: 'd1', password: 'wrong' },
      args('bad-3'),
    );
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/bad user name or password/i);
    const wrong5 = await mosquittoPub(
      { port: edge, version: 'mqttv5', username: 'd1', password: 'wrong' },
      args('bad-5'),
    );
    expect(wrong5.code).not.toBe(0);
    expect(wrong5.stderr).toMatch(/bad user name or password/i);
    const anonymous = await mosquittoPub({ port: edge, version: 'mqttv311' }, args('anon'));
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/not authori[sz]ed/i);
    const unknown = await mosquittoPub(
      { port: edge, version: 'mqttv311', username: 'd9', password: 'secret' },
      args('unknown'),
    );
    expect(unknown.stderr).toMatch(/bad user name or password/i);
    expect(unknown.code).not.toBe(0);

    const right = await mosquittoPub({ port: edge, username: 'd1', password: 'secret' }, args('good'));
    expect(right.code, right.stderr).toBe(0);
    await until(() => upstream.messages.length >= 1, 5000, 'the accepted message on mosquitto');
    await sleep(200);
    await upstream.stop();
    expect(upstream.messages.map((m) => [m.topic, text(m)])).toEqual([
      [`${ROOT}devices/d1/telemetry/t`, 'good'],
    ]);
  }, 30_000);

  it('refuses a device publishing outside devices/<its id>/ (0x87 on MQTT 5, disconnect on 3.1.1)', async () => {
    const upstream = await MosquittoSub.start({ port: mosquitto.port, topics: [`${ROOT}#`] });
    const d1 = { port: edge, username: 'd1', password: 'secret' };

    // mosquitto_pub on MQTT 5 gets a PUBACK with reason code 0x87 and says so (its exit status stays 0).
    const other5 = await mosquittoPub({ ...d1, version: 'mqttv5' }, [
      '-q',
      '1',
      '-t',
      'devices/d2/telemetry/t',
      '-m',
      'x5',
    ]);
    expect(other5.stderr).toMatch(/Publish 1 failed: Not authorized/);
    // On MQTT 3.1.1, which has no refusal, the broker closes the connection.
    const other3 = await mosquittoPub({ ...d1, version: 'mqttv311' }, [
      '-q',
      '1',
      '-t',
      'devices/d2/telemetry/t',
      '-m',
      'x3',
    ]);
    expect(other3.code).not.toBe(0);
    expect(other3.stderr).toMatch(/connection was lost/i);

    // mqtt.js sees the reason code itself, and the connection stays up for allowed messages.
    const client = await connect(`mqtt://127.0.0.1:${edge}`, { username: 'd1', password: 'secret' });
    for (const topic of ['devices/d2/telemetry/t', 'devices/d1/twin/desired', 'devices/d1/commands/reboot']) {
      const err = await client.publishAsync(topic, 'no', { qos: 1 }).then(
        () => undefined,
        (e: unknown) => e as { code?: number },
      );
      expect(err?.code, topic).toBe(0x87);
    }
    await client.publishAsync('devices/d1/telemetry/t', 'allowed', { qos: 1 });
    await until(() => upstream.messages.some((m) => text(m) === 'allowed'), 5000, 'the allowed message');
    await sleep(200);
    await client.endAsync();
    await upstream.stop();
    // Nothing refused reached mosquitto (the agent's own status aside).
    const forwarded = upstream.messages.filter((m) => m.topic !== `${ROOT}agent/status`);
    expect(forwarded.map((m) => [m.topic, text(m)])).toEqual([[`${ROOT}devices/d1/telemetry/t`, 'allowed']]);
  }, 30_000);
});
