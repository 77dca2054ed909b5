// What a Node MQTT server costs per connection and per QoS 1 message at the least: a plain net server, one
// mqtt-packet parser per socket, a CONNACK and a PUBACK written as one buffer each; no broker, no store, no
// forwarding. The floor under any broker core written in Node, against which aedes (the agent) and mosquitto
// are compared in docs/performance.md. Its clients run in a child process, so only the server's CPU is counted.
//   node bench/probes/mqttFloor.mjs [CLIENTS=1500] [ROUNDS=5]
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = fileURLToPath(import.meta.url);
const ticks = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};
const [n = '1500', rounds = '5'] = process.argv.slice(2, 4);

if (process.argv[4] === 'clients') {
  // The child: N MQTT 5 clients (mqtt.js), 50 connecting at a time, then ROUNDS of one QoS 1 message each.
  const mqtt = require('mqtt');
  const url = process.argv[5];
  const clients = [];
  process.send('start');
  for (let i = 0; i < Number(n); i += 50)
    await Promise.all(
      Array.from({ length: Math.min(50, Number(n) - i) }, (_, k) =>
        mqtt.connectAsync(url, {
          clientId: `s-${i + k}`,
          protocolVersion: 5,
          reconnectPeriod: 0,
          keepalive: 60,
        }),
      ),
    ).then((cs) => clients.push(...cs));
  process.send('connected');
  const payload = Buffer.alloc(80, 1);
  for (let r = 0; r < Number(rounds); r++)
    await Promise.all(
      clients.map((c, i) => c.publishAsync(`devices/s-${i}/telemetry/t`, payload, { qos: 1 })),
    );
  process.send('done');
} else {
  const mqttPacket = require('mqtt-packet');
  const CONNACK = Buffer.from([0x20, 3, 0, 0, 0]);
  let messages = 0;
  const server = net.createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') socket.write(CONNACK);
      else if (p.cmd === 'publish') {
        messages++;
        socket.write(Buffer.from([0x40, 2, p.messageId >> 8, p.messageId & 255]));
      } else if (p.cmd === 'disconnect') socket.end();
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const child = fork(here, [n, rounds, 'clients', `mqtt://127.0.0.1:${server.address().port}`]);
  const at = {};
  const rss = {};
  child.on('message', (m) => {
    at[m] = ticks();
    rss[m] = Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    if (m !== 'done') return;
    const us = (a, b, per) => Math.round(((at[b] - at[a]) * 10_000) / per);
    console.log(
      JSON.stringify({
        clients: Number(n),
        messages,
        cpuPerConnectUs: us('start', 'connected', Number(n)),
        cpuPerMessageUs: us('connected', 'done', Number(n) * Number(rounds)),
        rssConnectedMB: Math.round(rss.connected * 10) / 10,
        kBPerConnection: Math.round(((rss.connected - rss.start) * 1024 * 10) / Number(n)) / 10,
      }),
    );
    child.kill();
    server.close();
    process.exit(0);
  });
}
