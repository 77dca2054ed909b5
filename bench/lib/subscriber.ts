// One mqtt.js client subscribed at QoS 1, counting arrivals. Forked by the benches with an IPC channel.
//   {cmd:'connect', url, filter}      -> {ev:'subscribed'}
//   {cmd:'expect', n, maxMs}          -> counting restarts at 0; {ev:'reached', count, unique, duplicates,
//                                        firstAt, lastAt, timedOut} once n have arrived (or at maxMs)
//   {cmd:'close'}                     -> ends the client and exits
// `unique` counts distinct leafbridge message ids (MQTT 5 user property lb-msg-id) when messages carry one.
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

const MESSAGE_ID_PROPERTY = 'lb-msg-id';

let client: MqttClient | undefined;
let expecting: { n: number; timer: NodeJS.Timeout } | undefined;
let count = 0;
let firstAt = 0;
let lastAt = 0;
let ids = new Set<string>();
let withoutId = 0;

function onMessage(_topic: string, _payload: Buffer, packet: IPublishPacket): void {
  const t = now();
  if (count === 0) firstAt = t;
  lastAt = t;
  count++;
  const id = packet.properties?.userProperties?.[MESSAGE_ID_PROPERTY];
  if (id === undefined) withoutId++;
  else ids.add(Array.isArray(id) ? (id[0] ?? '') : id);
  if (expecting && count >= expecting.n) report(false);
}

function report(timedOut: boolean): void {
  if (!expecting) return;
  clearTimeout(expecting.timer);
  expecting = undefined;
  const unique = ids.size + withoutId;
  process.send?.({
    ev: 'reached',
    count,
    unique,
    duplicates: count - unique,
    firstAt,
    lastAt,
    timedOut,
  });
}

process.on(
  'message',
  (
    m:
      | { cmd: 'connect'; url: string; filter: string }
      | { cmd: 'expect'; n: number; maxMs: number }
      | { cmd: 'close' },
  ) => {
    if (m.cmd === 'connect') {
      const c = mqtt.connect(m.url, {
        clientId: `bench-sub-${process.pid}`,
        protocolVersion: 5,
        clean: true,
        reconnectPeriod: 0,
        keepalive: 60,
      });
      client = c;
      c.on('message', onMessage);
      c.once('error', childFatal);
      c.once('connect', () => {
        c.subscribe(m.filter, { qos: 1 }, (err) => {
          if (err) childFatal(err);
          else process.send?.({ ev: 'subscribed' });
        });
      });
    } else if (m.cmd === 'expect') {
      count = 0;
      firstAt = 0;
      lastAt = 0;
      ids = new Set();
      withoutId = 0;
      expecting = { n: m.n, timer: setTimeout(() => report(true), m.maxMs) };
      process.send?.({ ev: 'expecting' });
    } else if (m.cmd === 'close') {
      const c = client;
      client = undefined;
      (c ? c.endAsync(true) : Promise.resolve()).finally(() => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    }
  },
);
