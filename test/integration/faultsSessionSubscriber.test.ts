import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { connect, until } from '../helpers/mqtt.js';
import { ROOT, startAgent, stopProcess, tempDir, waitForLine } from '../helpers/processes.js';

// Issue 18, fault suite: a persistent-session subscriber on the edge (a broker pod's view) is SIGKILLed
// mid-stream, then the agent is SIGKILLed and restarted, then the subscriber comes back with the same session.
const DEVICES = 4;
const PER_DEVICE = 500;
const FILTER = 'devices/+/telemetry/#';
const SUBSCRIBER = join(ROOT, 'test/helpers/sessionSubscriber.mjs');

/** Starts sessionSubscriber.mjs; resolves with the process and whether the broker still had its session. */
async function startSubscriber(url: string, clientId: string, record: string) {
  const child = spawn(process.execPath, [SUBSCRIBER, url, clientId, FILTER, record], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // One reader for both lines: they often come in one chunk, and a reader closed after the first drops the rest.
  let sessionPresent: boolean | undefined;
  await waitForLine(child, (l) => {
    if (typeof l.sessionPresent === 'boolean') sessionPresent = l.sessionPresent;
    return l.subscribed === true ? true : undefined;
  });
  return { child, sessionPresent };
}

interface Publisher {
  /** `dev-<d>/<n>` of every message the publisher got a PUBACK for. */
  accepted: Set<string>;
  done: Promise<void>;
  clients: MqttClient[];
}

/**
 * One client per device, each publishing its messages at QoS 1 one after another. The clients reconnect, and
 * mqtt.js keeps an unacknowledged PUBLISH in its outgoing store and sends it again on reconnect, so the stream
 * carries on across an agent restart; a message counts as accepted once its PUBACK came.
 */
async function startPublisher(url: string, gapMs: number): Promise<Publisher> {
  const accepted = new Set<string>();
  const clients = await Promise.all(
    Array.from({ length: DEVICES }, async (_, d) => {
      const client = await connect(url, { clientId: `dev-${d}`, protocolVersion: 4, reconnectPeriod: 200 });
      // connect() ends the client on its first error; this one must ride out ECONNREFUSED while the agent is down.
      client.removeAllListeners('error');
      client.on('error', () => {});
      return client;
    }),
  );
  const run = async (client: MqttClient, d: number) => {
    for (let n = 0; n < PER_DEVICE; n++) {
      await client.publishAsync(`devices/dev-${d}/telemetry/t`, JSON.stringify({ d, n }), { qos: 1 });
      accepted.add(`dev-${d}/${n}`);
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
  };
  const done = Promise.all(clients.map((c, d) => run(c, d))).then(() => undefined);
  return { accepted, done, clients };
}

/** What the subscriber recorded: first arrivals in order, duplicates, and devices whose first arrivals go back. */
function readRecord(file: string) {
  const seen = new Set<string>();
  const last = new Map<string, number>();
  const outOfOrder: string[] = [];
  let duplicates = 0;
  let lines = 0;
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  for (const line of text.split('\n')) {
    const [topic, , payload] = line.split('\t');
    if (!topic || !payload) continue;
    lines++;
    const { d, n } = JSON.parse(payload) as { d: number; n: number };
    const key = `dev-${d}/${n}`;
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    const previous = last.get(`dev-${d}`) ?? -1;
    if (n < previous) outOfOrder.push(`${key} after ${previous}`);
    last.set(`dev-${d}`, n);
  }
  return { lines, unique: seen, duplicates, outOfOrder };
}

describe('faults, counted at a persistent-session subscriber on the edge', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  function killOnCleanup(child: ChildProcess) {
    cleanups.push(() => stopProcess(child, 'SIGKILL'));
  }

  // It lost the PUBLISH in flight at the agent's SIGKILL about one run in three (one per device, dev-0/206, …):
  // aedes sent the PUBACK before it queued the message for the offline session. The edge broker now holds the
  // PUBACK until the message is published (src/broker/edgeBroker.ts, holdAck; test/unit/broker/edgeBroker.test.ts).
  it('(f) subscriber and agent SIGKILLed mid-stream, both restarted: every accepted QoS 1 message arrives (order per device reported)', {
    timeout: 90_000,
  }, async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const record = join(dir.path, 'received.tsv');
    // The clients reconnect to the restarted agent, so its broker keeps the port it bound first (port 0).
    const firstConfig = agentConfig(join(dir.path, 'agent'), undefined);
    const first = await startAgent(dir.path, firstConfig);
    killOnCleanup(first.child);
    const brokerPort = first.broker.port;
    const config = { ...firstConfig, broker: { ...firstConfig.broker, listen: `127.0.0.1:${brokerPort}` } };
    const url = `mqtt://127.0.0.1:${brokerPort}`;
    const sub1 = await startSubscriber(url, 'pod-view', record);
    killOnCleanup(sub1.child);
    expect(sub1.sessionPresent).toBe(false);

    const pub = await startPublisher(url, 2);
    cleanups.push(() => Promise.all(pub.clients.map((c) => c.endAsync(true))));
    const total = DEVICES * PER_DEVICE;
    await until(() => pub.accepted.size >= total * 0.2, 30_000, 'stream under way');
    await stopProcess(sub1.child, 'SIGKILL');
    const acceptedAtSubscriberKill = pub.accepted.size;
    await until(
      () => pub.accepted.size >= acceptedAtSubscriberKill + total * 0.2,
      30_000,
      'queueing offline',
    );
    await stopProcess(first.child, 'SIGKILL');
    const acceptedAtAgentKill = pub.accepted.size;

    const second = await startAgent(dir.path, config);
    killOnCleanup(second.child);
    await until(() => pub.accepted.size >= acceptedAtAgentKill + total * 0.1, 30_000, 'publisher back');
    const sub2 = await startSubscriber(url, 'pod-view', record).catch((err: unknown) => {
      const lines = [...second.stdout, ...second.stderr].join('').split('\n');
      console.log(
        `(f) the agent's log:\n${lines
          .filter((l) => /warn|error|"level":[45]/.test(l))
          .slice(-20)
          .join('\n')}`,
      );
      throw err;
    });
    killOnCleanup(sub2.child);
    expect(sub2.sessionPresent).toBe(true);

    await pub.done;
    expect(pub.accepted.size).toBe(total);
    await until(
      () => readRecord(record).unique.size >= total,
      20_000,
      'every message at the subscriber',
    ).catch(() => {});
    await new Promise((r) => setTimeout(r, 300)); // any late duplicate

    const got = readRecord(record);
    const missing = [...pub.accepted].filter((k) => !got.unique.has(k));
    console.log(
      `(f) accepted ${pub.accepted.size} (${acceptedAtSubscriberKill} at the subscriber's SIGKILL, ` +
        `${acceptedAtAgentKill} at the agent's); received ${got.lines}, ${got.unique.size} unique, ` +
        `${got.duplicates} duplicates, ${missing.length} missing, ${got.outOfOrder.length} out of order`,
    );
    if (missing.length > 0) console.log(`(f) missing: ${missing.slice(0, 20)}`);
    expect(missing.slice(0, 20)).toEqual([]);
    // MQTT 3.1.1 §4.6 asks a server to send a topic's QoS 1 messages to a subscriber in the order they came
    // in. aedes does not while it drains a resumed session's queue: messages published meanwhile go out at
    // once, interleaved with the backlog (dev-1 …101, 364, 102, 365, …). Reported, not asserted.
    if (got.outOfOrder.length > 0)
      console.log(`(f) first arrivals out of order: ${got.outOfOrder.slice(0, 5)}`);
  });
});
