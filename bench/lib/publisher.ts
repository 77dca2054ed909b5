// N mqtt.js clients in one process, each keeping a window of QoS 1 PUBLISHes in flight on
// devices/dev-<i>/telemetry/t. Forked by the benches with an IPC channel.
//   {cmd:'connect', url, clients, protocolVersion}          -> {ev:'connected', clients}
//   {cmd:'run', total, window, payloadBytes, maxMs}         -> {ev:'done', acked, errors, firstPublishAt,
//                                                               lastAckAt, timedOut}
//   {cmd:'close'}                                           -> ends the clients and exits
import mqtt, { type MqttClient } from 'mqtt';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

interface ConnectCmd {
  cmd: 'connect';
  url: string;
  clients: number;
  protocolVersion: 4 | 5;
}
interface RunCmd {
  cmd: 'run';
  total: number;
  window: number;
  payloadBytes: number;
  maxMs: number;
}

let clients: MqttClient[] = [];
let runs = 0;

async function connect(c: ConnectCmd): Promise<void> {
  clients = await Promise.all(
    Array.from(
      { length: c.clients },
      (_, i) =>
        new Promise<MqttClient>((resolve, reject) => {
          const client = mqtt.connect(c.url, {
            clientId: `bench-pub-${process.pid}-${i}`,
            protocolVersion: c.protocolVersion,
            clean: true,
            reconnectPeriod: 0,
            keepalive: 60,
            connectTimeout: 10_000,
          });
          client.once('connect', () => resolve(client));
          client.once('error', reject);
          client.on('close', () => {
            if (clients.includes(client)) process.send?.({ ev: 'disconnected', client: i });
          });
        }),
    ),
  );
  process.send?.({ ev: 'connected', clients: clients.length });
}

function run(r: RunCmd): void {
  const run = ++runs;
  const payload = Buffer.alloc(r.payloadBytes, 0x61);
  let acked = 0;
  let errors = 0;
  let lastAckAt = 0;
  let finished = false;
  const firstPublishAt = now();
  const n = clients.length;
  const finish = (timedOut: boolean) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    process.send?.({ ev: 'done', run, acked, errors, firstPublishAt, lastAckAt, timedOut });
  };
  const timer = setTimeout(() => finish(true), r.maxMs);
  clients.forEach((client, i) => {
    const quota = Math.floor(r.total / n) + (i < r.total % n ? 1 : 0);
    const topic = `devices/dev-${i}/telemetry/t`;
    let sent = 0;
    let inflight = 0;
    const onAck = (err?: Error) => {
      inflight--;
      if (err) errors++;
      else acked++;
      lastAckAt = now();
      if (acked + errors === r.total) finish(false);
      else pump();
    };
    const pump = () => {
      while (!finished && inflight < r.window && sent < quota) {
        sent++;
        inflight++;
        client.publish(topic, payload, { qos: 1 }, onAck);
      }
    };
    pump();
  });
}

process.on('message', (m: ConnectCmd | RunCmd | { cmd: 'close' }) => {
  if (m.cmd === 'connect') connect(m).catch(childFatal);
  else if (m.cmd === 'run') run(m);
  else if (m.cmd === 'close') {
    const all = clients;
    clients = [];
    Promise.all(all.map((c) => c.endAsync(true))).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  }
});
