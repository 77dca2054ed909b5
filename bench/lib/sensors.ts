// Many slow sensors in one process: N mqtt.js MQTT 5 clients, each publishing one QoS 1 message a second on
// devices/<id>/telemetry/t. Forked by the benches with an IPC channel; a bench spreads thousands of sensors over
// a few of these so that the load generator is not the bottleneck.
//   {cmd:'connect', url, clients, idPrefix, concurrency}      -> {ev:'connected', clients, ms}
//   {cmd:'run', seconds, payloadBytes}                        -> {ev:'done', sent, acked, errors, firstPublishAt,
//                                                                 lastAckAt}
//   {cmd:'close'}                                             -> ends the clients and exits
import mqtt, { type MqttClient } from 'mqtt';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

interface ConnectCmd {
  cmd: 'connect';
  url: string;
  clients: number;
  idPrefix: string;
  /** CONNECTs in flight at once. */
  concurrency: number;
}
interface RunCmd {
  cmd: 'run';
  seconds: number;
  payloadBytes: number;
}

let clients: MqttClient[] = [];
let prefix = '';

function connectOne(url: string, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      clientId,
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 0,
      keepalive: 60,
      connectTimeout: 30_000,
    });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

async function connect(c: ConnectCmd): Promise<void> {
  const started = now();
  prefix = c.idPrefix;
  const out: MqttClient[] = new Array(c.clients);
  let next = 0;
  const worker = async () => {
    while (next < c.clients) {
      const i = next++;
      out[i] = await connectOne(c.url, `${c.idPrefix}${i}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(c.concurrency, c.clients) }, worker));
  clients = out;
  process.send?.({ ev: 'connected', clients: clients.length, ms: now() - started });
}

/** Each client publishes `seconds` messages, one a second, the clients' phases spread evenly over the second. */
function run(r: RunCmd): void {
  const payload = Buffer.alloc(r.payloadBytes, 0x62);
  const total = clients.length * r.seconds;
  let sent = 0;
  let acked = 0;
  let errors = 0;
  let lastAckAt = 0;
  const firstPublishAt = now();
  const onAck = (err?: Error) => {
    if (err) errors++;
    else acked++;
    lastAckAt = now();
    if (acked + errors === total)
      process.send?.({ ev: 'done', sent, acked, errors, firstPublishAt, lastAckAt });
  };
  clients.forEach((client, i) => {
    const topic = `devices/${prefix}${i}/telemetry/t`;
    let left = r.seconds;
    const tick = () => {
      sent++;
      client.publish(topic, payload, { qos: 1 }, onAck);
      if (--left > 0) setTimeout(tick, 1000);
    };
    setTimeout(tick, (1000 * i) / clients.length);
  });
}

process.on('message', (m: ConnectCmd | RunCmd | { cmd: 'close' }) => {
  if (m.cmd === 'connect') connect(m).catch(childFatal);
  else if (m.cmd === 'run') run(m);
  else if (m.cmd === 'close') {
    const all = clients;
    clients = [];
    Promise.all(all.map((c) => c.endAsync(true))).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  }
});
