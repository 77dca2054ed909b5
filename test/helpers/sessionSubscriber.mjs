// A persistent-session subscriber in a process of its own (mqtt.js, MQTT 3.1.1, clean session false), for
// fault tests that SIGKILL it. argv: URL CLIENT_ID FILTER RECORD.
// Prints {"sessionPresent": bool} once connected and {"subscribed": true} once the subscription holds (a
// resumed session is not subscribed again: its subscription must have survived). Every message is appended
// to RECORD (topic, dup flag, payload; tab-separated) with a write(2) before mqtt.js sends the PUBACK
// ('message' is emitted before the acknowledgement), so a SIGKILL loses nothing that was acknowledged: the
// kernel keeps what was written, the process needs no fsync to survive its own death.
import { openSync, writeSync } from 'node:fs';
import mqtt from 'mqtt';

const [url, clientId, filter, recordFile] = process.argv.slice(2);
const record = openSync(recordFile, 'a');

const client = mqtt.connect(url, {
  clientId,
  clean: false,
  protocolVersion: 4,
  reconnectPeriod: 200,
  connectTimeout: 5000,
});
client.on('message', (topic, payload, packet) => {
  writeSync(record, `${topic}\t${packet.dup ? 1 : 0}\t${payload.toString('utf8')}\n`);
});
client.once('connect', (connack) => {
  console.log(JSON.stringify({ sessionPresent: connack.sessionPresent }));
  if (connack.sessionPresent) {
    console.log(JSON.stringify({ subscribed: true }));
    return;
  }
  client.subscribe(filter, { qos: 1 }, (err, granted) => {
    if (err || granted?.[0]?.qos !== 1) {
      console.error(`subscribe failed: ${err?.message ?? JSON.stringify(granted)}`);
      process.exit(1);
    }
    console.log(JSON.stringify({ subscribed: true }));
  });
});
client.on('error', (err) => console.error(`subscriber: ${err.message}`));
process.on('SIGTERM', () => client.end(false, () => process.exit(0)));
