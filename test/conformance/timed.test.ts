// Cases that wait on the brokers' clocks (keepalive, session expiry, message expiry, will delay), against the
// edge broker and mosquitto. Intervals of 1–2 s, and the cases of a block run concurrently to keep it short.
import { describe, expect, it } from 'vitest';
import { within } from '../helpers/wait.js';
import { BROKERS, QUIET_MS, sleep, useBrokers, useScope, VERSIONS, versionName } from './session.js';

const broker = useBrokers();

/**
 * When a broker closes a connection silent for 1.5 keepalives of 1 s: 3.1.1 and 5 say at 1.5 s. mosquitto
 * 2.0.11 counts in whole seconds and checks keepalives on a coarse timer: 1.1 to 6.5 s observed.
 */
const KEEPALIVE_CLOSE_MS = { edge: [1400, 3000], mosquitto: [1000, 10000] } as const;

for (const name of BROKERS) {
  for (const version of VERSIONS) {
    describe.concurrent(`${name}, MQTT ${versionName(version)}`, () => {
      const scope = useScope(() => broker(name), version, 'all');

      const [closeFrom, closeBy] = KEEPALIVE_CLOSE_MS[name];
      it(`keepalive 1 s: a silent client is cut (will sent) ${closeFrom}-${closeBy} ms after CONNECT; a pinging one is not`, async () => {
        const s = scope('keepalive');
        const watcher = await s.connect('watch');
        await watcher.subscribe([{ topic: s.topic, qos: 1 }]);
        const pinging = await s.connect('pinging', { keepalive: 1 });
        const timer = setInterval(() => pinging.send({ cmd: 'pingreq' }), 500);
        try {
          const silent = await s.connect('silent', {
            keepalive: 1,
            will: { topic: s.topic, payload: 'expired', qos: 1, retain: false },
          });
          const connected = Date.now();
          await within(silent.closed, closeBy + 1000, 'the broker to close the silent connection');
          const elapsed = Date.now() - connected;
          expect(elapsed).toBeGreaterThanOrEqual(closeFrom);
          expect(elapsed).toBeLessThanOrEqual(closeBy);
          expect((await watcher.message(s.topic)).payload.toString()).toBe('expired');
          expect(pinging.isClosed).toBe(false);
          await pinging.next('pingresp');
        } finally {
          clearInterval(timer);
        }
      });

      if (version !== 5) return;

      it('session expiry: a session ends after its interval, at once with 0, or as DISCONNECT sets it', async () => {
        const s = scope('expiry');
        const sessions = { short: 1, zero: 0, dropped: 60, long: 60 } as const;
        for (const [session, sessionExpiryInterval] of Object.entries(sessions)) {
          const c = await s.connect(session, { clean: false, properties: { sessionExpiryInterval } });
          await c.subscribe([{ topic: `${s.topic}/${session}`, qos: 1 }]);
          await c.disconnect(session === 'dropped' ? { sessionExpiryInterval: 0 } : undefined);
        }
        const pub = await s.connect('pub');
        for (const session of Object.keys(sessions))
          await pub.publish({ topic: `${s.topic}/${session}`, payload: 'while away', qos: 1 });
        await sleep(2200);
        for (const session of Object.keys(sessions))
          await pub.publish({ topic: `${s.topic}/${session}`, payload: 'later', qos: 1 });
        for (const session of Object.keys(sessions)) {
          const again = await s.open({
            clientId: s.id(session),
            clean: false,
            properties: { sessionExpiryInterval: 60 },
          });
          expect([session, again.connack.sessionPresent]).toEqual([session, session === 'long']);
          if (session === 'long') {
            await again.client.message(`${s.topic}/long`);
            await again.client.message(`${s.topic}/long`);
          }
          await sleep(session === 'long' ? 0 : QUIET_MS);
          const got = again.client.on(`${s.topic}/${session}`).map((m) => m.payload.toString());
          expect([session, got]).toEqual([session, session === 'long' ? ['while away', 'later'] : []]);
        }
      });

      it('message expiry: an expired message is not delivered, a live one comes with its interval counted down', async () => {
        const s = scope('msgexpiry');
        const first = await s.connect('sub', { clean: false, properties: { sessionExpiryInterval: 60 } });
        await first.subscribe([{ topic: `${s.topic}/queued`, qos: 1 }]);
        await first.disconnect();
        const pub = await s.connect('pub');
        const send = (topic: string, payload: string, messageExpiryInterval: number, retain = false) =>
          pub.publish({
            topic: `${s.topic}/${topic}`,
            payload,
            qos: 1,
            retain,
            properties: { messageExpiryInterval },
          });
        await send('queued', 'short', 1);
        await send('queued', 'long', 60);
        await send('retained-short', 'short', 1, true);
        await send('retained-long', 'long', 60, true);
        await sleep(2200);

        const { client } = await s.open({
          clientId: s.id('sub'),
          clean: false,
          properties: { sessionExpiryInterval: 60 },
        });
        const long = await client.message(`${s.topic}/queued`);
        expect(long.payload.toString()).toBe('long');
        expect(long.properties?.messageExpiryInterval).toBeGreaterThanOrEqual(50);
        expect(long.properties?.messageExpiryInterval).toBeLessThanOrEqual(58);
        const late = await s.connect('late');
        await late.subscribe([{ topic: `${s.topic}/+`, qos: 1 }]);
        expect((await late.message(`${s.topic}/retained-long`)).payload.toString()).toBe('long');
        await sleep(QUIET_MS);
        expect(client.on(`${s.topic}/queued`)).toHaveLength(1);
        expect(late.on(`${s.topic}/retained-short`)).toEqual([]);
        await pub.publish({ topic: `${s.topic}/retained-long`, payload: '', qos: 1, retain: true });
      });

      it('will delay: the will waits its interval, and is not sent if the session resumes in time', async () => {
        const s = scope('willdelay');
        const watcher = await s.connect('watch');
        await watcher.subscribe([{ topic: `${s.topic}/#`, qos: 1 }]);
        const withWill = (what: string) =>
          s.connect(what, {
            clean: false,
            properties: { sessionExpiryInterval: 10 },
            will: {
              topic: `${s.topic}/${what}`,
              payload: what,
              qos: 1,
              retain: false,
              properties: { willDelayInterval: 1 },
            },
          });
        const delayed = await withWill('delayed');
        const resumed = await withWill('resumed');
        const dropped = Date.now();
        await Promise.all([delayed.destroy(), resumed.destroy()]);
        await s.open({ clientId: s.id('resumed'), clean: false, properties: { sessionExpiryInterval: 10 } });
        await sleep(500);
        expect(watcher.on(`${s.topic}/delayed`)).toEqual([]);
        await watcher.message(`${s.topic}/delayed`, 3000);
        expect(Date.now() - dropped).toBeGreaterThanOrEqual(900);
        await sleep(Math.max(0, 2000 - (Date.now() - dropped)));
        expect(watcher.on(`${s.topic}/resumed`)).toEqual([]);
      });
    });
  }
}
