// MQTT behaviour that 3.1.1 and 5 share, each case against the edge broker (`leafbridge agent`) and against
// mosquitto, in both protocol versions. Raw packets (mqtt-packet), so every flag and id is seen as sent.
import { describe, expect, it } from 'vitest';
import { ALLOWED_PREFIX, FULL, RESTRICTED } from '../helpers/conformanceBrokers.js';
import { BROKERS, QUIET_MS, sleep, useBrokers, useScope, VERSIONS, versionName } from './session.js';

const broker = useBrokers();

for (const name of BROKERS) {
  for (const version of VERSIONS) {
    describe(`${name}, MQTT ${versionName(version)}`, () => {
      const scope = useScope(() => broker(name), version);

      it('publish and subscribe at QoS 0, 1 and 2, downgraded to the subscription QoS', async () => {
        const s = scope('pubsub');
        const sub = await s.connect('sub');
        expect(await sub.subscribe([{ topic: `${s.topic}/#`, qos: 2 }])).toEqual([2]);
        const low = await s.connect('low');
        expect(await low.subscribe([{ topic: `${s.topic}/#`, qos: 1 }])).toEqual([1]);
        const pub = await s.connect('pub');
        for (const qos of [0, 1, 2] as const) {
          expect(await pub.publish({ topic: `${s.topic}/q${qos}`, payload: `qos${qos}`, qos })).toBe(0);
        }
        for (const qos of [0, 1, 2] as const) {
          const m = await sub.message(`${s.topic}/q${qos}`);
          expect([m.qos, m.payload.toString(), m.retain]).toEqual([qos, `qos${qos}`, false]);
          expect((await low.message(`${s.topic}/q${qos}`)).qos).toBe(Math.min(qos, 1));
        }
        const q2 = sub.on(`${s.topic}/q2`)[0]!;
        await sub.next('pubrel', (p) => p.messageId === q2.messageId); // the QoS 2 flow completes
      });

      it('retained messages: set, replace and clear', async () => {
        const s = scope('retain');
        const pub = await s.connect('pub');
        await pub.publish({ topic: s.topic, payload: 'first', qos: 1, retain: true });
        const a = await s.connect('a');
        await a.subscribe([{ topic: s.topic, qos: 1 }]);
        expect(await a.message(s.topic)).toMatchObject({ retain: true, payload: Buffer.from('first') });

        await pub.publish({ topic: s.topic, payload: 'second', qos: 1, retain: true });
        // A live message goes to existing subscribers with RETAIN 0 (3.1.1 [MQTT-3.3.1-9]; 5.0 without rap).
        expect(await a.message(s.topic)).toMatchObject({ retain: false, payload: Buffer.from('second') });
        const b = await s.connect('b');
        await b.subscribe([{ topic: s.topic, qos: 1 }]);
        expect(await b.message(s.topic)).toMatchObject({ retain: true, payload: Buffer.from('second') });

        await pub.publish({ topic: s.topic, payload: '', qos: 1, retain: true });
        expect((await a.message(s.topic)).payload).toHaveLength(0); // delivered as normal, then cleared
        const c = await s.connect('c');
        await c.subscribe([{ topic: s.topic, qos: 1 }]);
        await sleep(QUIET_MS);
        expect(c.on(s.topic)).toEqual([]);
        expect(b.on(s.topic)).toHaveLength(2); // the retained 'second', then the clearing message
      });

      it('will messages: published when the connection drops, not after a DISCONNECT', async () => {
        const s = scope('will');
        const watcher = await s.connect('watch');
        await watcher.subscribe([{ topic: `${s.topic}/#`, qos: 1 }]);
        const will = (what: string) => ({
          topic: `${s.topic}/${what}`,
          payload: what,
          qos: 1 as const,
          retain: false,
        });
        const polite = await s.connect('polite', { will: will('polite') });
        const dropped = await s.connect('dropped', { will: will('dropped') });
        await polite.disconnect();
        await dropped.destroy();
        expect((await watcher.message(`${s.topic}/dropped`)).payload.toString()).toBe('dropped');
        await sleep(QUIET_MS);
        expect(watcher.on(`${s.topic}/polite`)).toEqual([]);
      });

      it('a zero-length client id with a clean session is accepted', async () => {
        const s = scope('zeroid');
        const { client, connack } = await s.open({ clientId: '', clean: true });
        expect(connack.reasonCode ?? connack.returnCode).toBe(0);
        if (version === 5) expect(connack.properties?.assignedClientIdentifier).toMatch(/.+/);
        await client.subscribe([{ topic: s.topic, qos: 1 }]);
        await client.publish({ topic: s.topic, payload: 'echo', qos: 1 });
        expect((await client.message(s.topic)).payload.toString()).toBe('echo');
      });

      if (version === 4) {
        it('a zero-length client id with a persistent session is refused (CONNACK 2)', async () => {
          const s = scope('zeroid');
          const { connack } = await s.open(emptyIdPersistentConnect());
          expect(connack.returnCode).toBe(2);
        });
      }

      it('offline message queueing: QoS 1 and 2 kept for a persistent session', async () => {
        const s = scope('offline');
        const first = await s.open({ clientId: s.id('sub'), ...s.persistent() });
        expect(first.connack.sessionPresent).toBe(false);
        await first.client.subscribe([{ topic: `${s.topic}/+`, qos: 2 }]);
        await first.client.disconnect();
        const pub = await s.connect('pub');
        for (const qos of [0, 1, 2] as const)
          await pub.publish({ topic: `${s.topic}/q${qos}`, payload: `q${qos}`, qos });
        const { client, connack } = await s.open({ clientId: s.id('sub'), ...s.persistent() });
        expect(connack.sessionPresent).toBe(true);
        expect(await client.message(`${s.topic}/q1`)).toMatchObject({ qos: 1, payload: Buffer.from('q1') });
        expect(await client.message(`${s.topic}/q2`)).toMatchObject({ qos: 2, payload: Buffer.from('q2') });
        // QoS 0 may be queued or not (3.1.1 §3.1.2.4, 5.0 §3.1.2.4): neither is checked.
      });

      it('overlapping subscriptions: delivered at the highest matching QoS', async () => {
        const s = scope('overlap');
        const sub = await s.connect('sub');
        expect(
          await sub.subscribe([
            { topic: `${s.topic}/#`, qos: 2 },
            { topic: `${s.topic}/+`, qos: 1 },
          ]),
        ).toEqual([2, 1]);
        const pub = await s.connect('pub');
        await pub.publish({ topic: `${s.topic}/a`, payload: 'both', qos: 2 });
        await sub.message(`${s.topic}/a`);
        await sleep(QUIET_MS);
        const copies = sub.on(`${s.topic}/a`);
        // One copy at the maximum QoS, or one per subscription (both allowed, 3.1.1 §3.3.5 and 5.0 §3.3.4).
        expect(copies.length).toBeGreaterThanOrEqual(1);
        expect(copies.length).toBeLessThanOrEqual(2);
        expect(Math.max(...copies.map((c) => c.qos))).toBe(2);
      });

      it('redelivery on reconnect: unacknowledged QoS 1 and 2 PUBLISHes resent with DUP and their ids', async () => {
        const s = scope('redeliver');
        const sub = await s.connect('sub', s.persistent());
        sub.autoAck = false;
        await sub.subscribe([{ topic: `${s.topic}/+`, qos: 2 }]);
        const pub = await s.connect('pub');
        await pub.publish({ topic: `${s.topic}/q1`, payload: 'q1', qos: 1 });
        await pub.publish({ topic: `${s.topic}/q2`, payload: 'q2', qos: 2 });
        const sent = [await sub.message(`${s.topic}/q1`), await sub.message(`${s.topic}/q2`)];
        await sub.destroy(); // no PUBACK, no PUBREC

        const { client, connack } = await s.open({ clientId: s.id('sub'), ...s.persistent() });
        expect(connack.sessionPresent).toBe(true);
        for (const first of sent) {
          const again = await client.message(first.topic);
          expect(again).toMatchObject({ dup: true, qos: first.qos, messageId: first.messageId });
          expect(again.payload.toString()).toBe(first.payload.toString());
        }
        await client.next('pubrel', (p) => p.messageId === sent[1]!.messageId);
        await sleep(QUIET_MS);
        expect(client.publishes).toHaveLength(2); // each once
        await client.disconnect();

        const third = await s.open({ clientId: s.id('sub'), ...s.persistent() });
        expect(third.connack.sessionPresent).toBe(true);
        await sleep(QUIET_MS);
        expect(third.client.publishes).toEqual([]); // acknowledged: not sent again
      });

      it('redelivery on reconnect: a QoS 2 message PUBRECed but not completed gets its PUBREL, not the PUBLISH', async () => {
        const s = scope('pubrel');
        const sub = await s.connect('sub', s.persistent());
        sub.autoAck = false;
        await sub.subscribe([{ topic: s.topic, qos: 2 }]);
        const pub = await s.connect('pub');
        await pub.publish({ topic: s.topic, payload: 'once', qos: 2 });
        const m = await sub.message(s.topic);
        sub.ack(m);
        await sub.next('pubrel', (p) => p.messageId === m.messageId);
        await sub.destroy(); // no PUBCOMP

        const { client, connack } = await s.open({ clientId: s.id('sub'), ...s.persistent() });
        expect(connack.sessionPresent).toBe(true);
        await client.next('pubrel', (p) => p.messageId === m.messageId);
        await sleep(QUIET_MS);
        expect(client.publishes).toEqual([]);
      });

      it('subscribe failure: a filter the ACL denies gets no messages', async () => {
        const s = scope('denied');
        const restricted = await s.connect('sub', {
          username: RESTRICTED.username,
          password: Buffer.from(RESTRICTED.password),
        });
        const allowed = `${ALLOWED_PREFIX}/${s.id('t')}`;
        const granted = await restricted.subscribe([
          { topic: allowed, qos: 1 },
          { topic: s.topic, qos: 1 },
        ]);
        expect(granted[0]).toBe(1);
        if (name === 'edge') {
          // Refused in the SUBACK: 0x80 in 3.1.1, 0x87 (not authorized) in 5.
          expect(granted[1]).toBe(version === 4 ? 0x80 : 0x87);
        }
        const pub = await s.connect('pub');
        await pub.publish({ topic: s.topic, payload: 'denied', qos: 1 });
        await pub.publish({ topic: allowed, payload: 'allowed', qos: 1 });
        await restricted.message(allowed);
        await sleep(QUIET_MS);
        expect(restricted.on(s.topic)).toEqual([]);
      });

      it('`$`-topics are not matched by filters starting with a wildcard', async () => {
        const s = scope('dollar');
        const dollar = `$${s.topic}`;
        const wild = await s.connect('wild');
        await wild.subscribe([
          { topic: '#', qos: 1 },
          { topic: `+/${s.topic.split('/').slice(1).join('/')}/#`, qos: 1 },
        ]);
        const exact = await s.connect('exact');
        await exact.subscribe([{ topic: `${dollar}/#`, qos: 1 }]);
        const pub = await s.connect('pub');
        await pub.publish({ topic: `${dollar}/x`, payload: 'dollar', qos: 1 });
        await pub.publish({ topic: `${s.topic}/fence`, payload: 'fence', qos: 1 });
        expect((await exact.message(`${dollar}/x`)).payload.toString()).toBe('dollar');
        await wild.message(`${s.topic}/fence`);
        await sleep(QUIET_MS);
        expect(wild.publishes.filter((p) => p.topic.startsWith('$'))).toEqual([]);
      });

      it('unsubscribe: UNSUBACK, then nothing more on that filter', async () => {
        const s = scope('unsub');
        const sub = await s.connect('sub');
        await sub.subscribe([
          { topic: `${s.topic}/a`, qos: 1 },
          { topic: `${s.topic}/b`, qos: 1 },
        ]);
        const codes = await sub.unsubscribe([`${s.topic}/a`]);
        if (version === 5) expect(codes).toEqual([0]);
        const pub = await s.connect('pub');
        await pub.publish({ topic: `${s.topic}/a`, payload: 'gone', qos: 1 });
        await pub.publish({ topic: `${s.topic}/b`, payload: 'kept', qos: 1 });
        await sub.message(`${s.topic}/b`);
        await sleep(QUIET_MS);
        expect(sub.on(`${s.topic}/a`)).toEqual([]);
      });
    });
  }
}

/** A 3.1.1 CONNECT with an empty client id and Clean Session 0, by hand: mqtt-packet refuses to write one. */
function emptyIdPersistentConnect(): Buffer {
  const field = (text: string) => {
    const bytes = Buffer.from(text);
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const usernameAndPassword = 0xc0;
  const body = Buffer.concat([
    field('MQTT'),
    Buffer.from([4, usernameAndPassword, 0, 30]), // level 4, flags (Clean Session 0), keepalive 30 s
    field(''),
    field(FULL.username),
    field(FULL.password),
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}
