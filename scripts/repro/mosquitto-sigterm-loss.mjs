// Reproduces a loss in Debian's mosquitto (2.0.11): QoS 1 messages it has PUBACKed just before a SIGTERM never
// reach a lagging persistent subscriber after the restart. No leafbridge code is involved. Run:
//   node scripts/repro/mosquitto-sigterm-loss.mjs [runs]
// Loopback only; mosquitto on a port picked by the OS.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';

const MESSAGES = 3000;
const STOP_AFTER = 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function once() {
  const dir = mkdtempSync(join(tmpdir(), 'mosquitto-loss-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\nmax_queued_messages 0\n`,
  );
  const start = async () => {
    const broker = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
    await sleep(300);
    return broker;
  };
  let broker = await start();
  const url = `mqtt://127.0.0.1:${port}`;
  const seen = new Set();
  const sub = mqtt.connect(url, { clientId: 'lagging', clean: false, reconnectPeriod: 100 });
  sub.on('error', () => {});
  sub.on('message', (_topic, payload) => {
    seen.add(payload.toString());
    const until = Date.now() + 1; // a subscriber slower than the stream: mosquitto queues for it
    while (Date.now() < until);
  });
  await new Promise((r) => sub.once('connect', () => sub.subscribe('t/#', { qos: 1 }, r)));
  const pub = mqtt.connect(url, { clientId: 'streaming', clean: false, reconnectPeriod: 100 });
  pub.on('error', () => {});
  const acked = new Set();
  const sent = (async () => {
    const window = [];
    for (let i = 0; i < MESSAGES; i++) {
      window.push(pub.publishAsync('t/x', String(i), { qos: 1 }).then(() => acked.add(String(i))));
      if (window.length >= 64) await window.shift();
    }
    await Promise.all(window);
  })();
  while (acked.size < STOP_AFTER) await sleep(5);
  broker.kill('SIGTERM');
  await new Promise((r) => broker.once('exit', r));
  broker = await start();
  await sent;
  for (let i = 0; i < 100 && seen.size < acked.size; i++) await sleep(50);
  const missing = [...acked].filter((m) => !seen.has(m));
  await Promise.all([sub.endAsync(true), pub.endAsync(true)]);
  broker.kill('SIGTERM');
  await new Promise((r) => broker.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
  return missing;
}

const runs = Number(process.argv[2] ?? 6);
let lossy = 0;
for (let run = 1; run <= runs; run++) {
  const missing = await once();
  if (missing.length > 0) lossy++;
  console.log(
    `run ${run}: ${missing.length} acknowledged messages never delivered${missing.length ? ` (${missing.join(', ')})` : ''}`,
  );
}
console.log(`${lossy} of ${runs} runs lost acknowledged messages`);
