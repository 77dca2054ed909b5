// Simulated edge agents for `npm run bench -- hub`: one MQTT 5 client per edge node on the cloud broker, each
// publishing its devices' reported twins upstream as an agent's bridge does (`{prefix}/{node}/devices/{id}/
// twin/reported`, QoS 1, the whole twin with `$version`, user property `lb-msg-id` = `{epoch}-{seq}`), and
// subscribed to its desired twins (`{prefix}/{node}/devices/+/twin/desired`) like the bridge. Forked with IPC.
//   {cmd:'connect', url, prefix, ids, sample}  -> {ev:'connected', clients, ms}; node i is `edge-{i}`, its devices ids[i]
//   {cmd:'start', ratePerDevice, nodes?} -> every device of the first `nodes` edges (default all) reports
//                                     `ratePerDevice` times a second, nodes spread over the second; counts and
//                                     samples restart from zero
//   {cmd:'stop'}                   -> {ev:'stopped', published, acked}
//   {cmd:'counts'}                 -> {ev:'counts', published, acked, errors, desired, at}
//   {cmd:'samples'}                -> {ev:'samples', desiredMs: [...], reports: {device: [[version, at], ...]}}
//   {cmd:'close'}                  -> ends the clients and exits
// `sample`: `node/id` keys whose report times are recorded (for report → Device status lag).
// A desired twin that carries `setAt` (the bench's API process stamps it) gives one desired → edge latency.
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

interface Node {
  name: string;
  client: MqttClient;
  epoch: string;
  seq: number;
  devices: { id: string; version: number; sampled: boolean }[];
  /** When this node next reports (ms, bench clock). */
  due: number;
}

let nodes: Node[] = [];
let prefix = 'leafbridge';
let timer: NodeJS.Timeout | undefined;
const counts = { published: 0, acked: 0, errors: 0, desired: 0 };
const desiredMs: number[] = [];
const reports = new Map<string, [number, number][]>();

async function connect(m: { url: string; prefix: string; ids: string[][]; sample: string[] }): Promise<void> {
  prefix = m.prefix;
  const sample = new Set(m.sample);
  const started = now();
  const connectOne = (i: number) =>
    new Promise<Node>((resolve, reject) => {
      const name = `edge-${i}`;
      const client = mqtt.connect(m.url, {
        clientId: `bench-edge-${i}-${process.pid}`,
        protocolVersion: 5,
        clean: true,
        reconnectPeriod: 0,
        keepalive: 60,
        connectTimeout: 30_000,
      });
      client.once('error', reject);
      client.once('connect', () => {
        client.on('message', (_t, payload) => onDesired(payload));
        client.subscribe(`${prefix}/${name}/devices/+/twin/desired`, { qos: 1 }, (err) => {
          if (err) return reject(err);
          const devices = (m.ids[i] ?? []).map((id) => ({
            id,
            version: 0,
            sampled: sample.has(`${name}/${id}`),
          }));
          resolve({ name, client, epoch: randomBytes(6).toString('hex'), seq: 0, devices, due: 0 });
        });
      });
    });
  // A few hundred connections at once is fine for mosquitto; batches keep the SYN backlog small.
  const out: Node[] = [];
  for (let i = 0; i < m.ids.length; i += 50) {
    const batch = Array.from({ length: Math.min(50, m.ids.length - i) }, (_, k) => connectOne(i + k));
    out.push(...(await Promise.all(batch)));
  }
  nodes = out;
  process.send?.({ ev: 'connected', clients: nodes.length, ms: now() - started });
}

function onDesired(payload: Buffer): void {
  const t = now();
  counts.desired++;
  try {
    const doc = JSON.parse(payload.toString('utf8')) as { setAt?: unknown };
    if (typeof doc.setAt === 'number') desiredMs.push(t - doc.setAt);
  } catch {
    // not ours
  }
}

/** Starts publishing; counts and samples start again from zero. */
function start(ratePerDevice: number, active = nodes.length): void {
  Object.assign(counts, { published: 0, acked: 0, errors: 0, desired: 0 });
  desiredMs.length = 0;
  reports.clear();
  const period = 1000 / ratePerDevice;
  const t0 = now();
  const publishing = nodes.slice(0, active);
  publishing.forEach((n, i) => {
    n.due = t0 + (period * i) / publishing.length; // spread over the period
  });
  const tick = () => {
    const t = now();
    for (const n of publishing) {
      while (n.due <= t) {
        publishNode(n, t);
        n.due += period;
      }
    }
  };
  timer = setInterval(tick, 5);
}

function publishNode(n: Node, t: number): void {
  for (const d of n.devices) {
    d.version++;
    const payload = `{"temp":${(20 + (d.version % 50) / 10).toFixed(1)},"seq":${d.version},"$version":${d.version}}`;
    const msgId = `${n.epoch}-${++n.seq}`;
    counts.published++;
    if (d.sampled) {
      const key = `${n.name}/${d.id}`;
      const list = reports.get(key) ?? [];
      list.push([d.version, t]);
      reports.set(key, list);
    }
    n.client.publish(
      `${prefix}/${n.name}/devices/${d.id}/twin/reported`,
      payload,
      { qos: 1, properties: { userProperties: { 'lb-msg-id': msgId } } },
      (err) => {
        if (err) counts.errors++;
        else counts.acked++;
      },
    );
  }
}

process.on('message', (m: { cmd: string } & Record<string, unknown>) => {
  try {
    switch (m.cmd) {
      case 'connect':
        connect(m as never).catch(childFatal);
        break;
      case 'start':
        start(m.ratePerDevice as number, m.nodes as number | undefined);
        break;
      case 'stop':
        if (timer) clearInterval(timer);
        timer = undefined;
        process.send?.({ ev: 'stopped', published: counts.published, acked: counts.acked });
        break;
      case 'counts':
        process.send?.({ ev: 'counts', ...counts, at: now() });
        break;
      case 'samples':
        process.send?.({ ev: 'samples', desiredMs, reports: Object.fromEntries(reports) });
        break;
      case 'close':
        if (timer) clearInterval(timer);
        for (const n of nodes) n.client.end(true);
        setTimeout(() => process.exit(0), 50);
        break;
    }
  } catch (err) {
    childFatal(err);
  }
});
