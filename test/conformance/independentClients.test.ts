// Retained messages, offline queueing and redelivery driven by clients that are not ours: Debian's
// mosquitto_pub/mosquitto_sub and python3-paho-mqtt 1.6.1, against the edge broker and mosquitto.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FULL } from '../helpers/conformanceBrokers.js';
import { type ClientOptions, killClients, mosquittoPub, mosquittoSubOnce } from '../helpers/mosquitto.js';
import type { Version } from '../helpers/rawMqtt.js';
import { BROKERS, useBrokers, useScope, VERSIONS, versionName } from './session.js';

const PYTHON = '/usr/bin/python3'; // Debian's, with python3-paho-mqtt (not a pyenv python3 on PATH)
const PAHO = fileURLToPath(new URL('./pahoClient.py', import.meta.url));

const broker = useBrokers();
afterAll(() => killClients());

/** Runs pahoClient.py; resolves with its JSON lines. */
function paho(port: number, clientId: string, version: Version, action: string, topic: string, count = 0) {
  const args = [PAHO, '127.0.0.1', String(port), clientId, String(version), FULL.username, FULL.password];
  return new Promise<Record<string, unknown>[]>((resolve, reject) =>
    execFile(PYTHON, [...args, action, topic, String(count)], { timeout: 15_000 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`paho ${action}: ${err.message}\n${stdout}\n${stderr}`))
        : resolve(
            stdout
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l) as Record<string, unknown>),
          ),
    ),
  );
}

/** The messages mosquitto_sub printed with `-F 'MSG …'`, without the prefix. */
const messages = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l.startsWith('MSG '))
    .map((l) => l.slice(4));

for (const name of BROKERS) {
  for (const version of VERSIONS) {
    describe.concurrent(`${name}, MQTT ${versionName(version)}`, () => {
      const scope = useScope(() => broker(name), version, 'all');
      const cli = (clientId?: string): ClientOptions => ({
        port: broker(name).port,
        version: version === 5 ? 'mqttv5' : 'mqttv311',
        username: FULL.username,
        password: FULL.password,
        ...(clientId ? { clientId } : {}),
      });

      it('retained messages with mosquitto_pub -r and mosquitto_sub: set, replace, clear', async () => {
        const s = scope('cliretain');
        /** What a new mosquitto_sub gets on the topic within 1 s (`-d`: its protocol trace, for failures). */
        const retained = async () => {
          const args = ['-d', '-t', s.topic, '-q', '1', '-C', '1', '-W', '1', '-F', 'MSG %r %q %p'];
          const r = await mosquittoSubOnce(cli(), args);
          return { code: r.code, lines: messages(r.stdout), trace: r.stdout };
        };
        const publish = async (args: string[]) =>
          expect((await mosquittoPub(cli(), ['-t', s.topic, '-q', '1', '-r', ...args])).code).toBe(0);
        const expectRetained = async (code: number, lines: string[]) => {
          const got = await retained();
          expect({ code: got.code, lines: got.lines }, got.trace).toEqual({ code, lines });
        };
        await publish(['-m', 'first']);
        await expectRetained(0, ['1 1 first']);
        await publish(['-m', 'second']);
        await expectRetained(0, ['1 1 second']);
        await publish(['-n']);
        await expectRetained(27, []); // 27: -W timed out, nothing came
      });

      it('offline queueing with mosquitto_sub -c: QoS 1 and 2 kept while it is away', async () => {
        const s = scope('clioffline');
        const sub = ['-c', '-q', '2', '-t', `${s.topic}/+`];
        expect((await mosquittoSubOnce(cli(s.id('sub')), [...sub, '-E'])).code).toBe(0);
        for (const qos of [1, 2, 0])
          await mosquittoPub(cli(), ['-t', `${s.topic}/q${qos}`, '-q', String(qos), '-m', `q${qos}`]);
        const r = await mosquittoSubOnce(cli(s.id('sub')), [
          ...sub,
          ...['-d', '-C', '2', '-W', '5', '-F', 'MSG %q %p'],
        ]);
        expect(messages(r.stdout), r.stdout).toEqual(['1 q1', '2 q2']);
      });

      it('offline queueing with paho: QoS 1 and 2 kept while it is away', async () => {
        const s = scope('pahooffline');
        const filter = `${s.topic}/+`;
        expect(await paho(s.port(), s.id('sub'), version, 'subscribe', filter)).toEqual([
          { sessionPresent: false },
        ]);
        for (const qos of [1, 2])
          await mosquittoPub(cli(), ['-t', `${s.topic}/q${qos}`, '-q', String(qos), '-m', `q${qos}`]);
        const got = await paho(s.port(), s.id('sub'), version, 'receive', filter, 2);
        expect(got[0]).toEqual({ sessionPresent: true });
        expect(got.slice(1).map((m) => [m.qos, m.payload, m.dup])).toEqual([
          [1, 'q1', false],
          [2, 'q2', false],
        ]);
      });

      it('redelivery to paho of QoS 1 and 2 messages another connection of its session left unacknowledged', async () => {
        const s = scope('pahoredeliv');
        const filter = `${s.topic}/+`;
        const raw = await s.connect('sub', s.persistent());
        raw.autoAck = false;
        await raw.subscribe([{ topic: filter, qos: 2 }]);
        for (const qos of [1, 2])
          await mosquittoPub(cli(), ['-t', `${s.topic}/q${qos}`, '-q', String(qos), '-m', `q${qos}`]);
        await raw.message(`${s.topic}/q1`);
        await raw.message(`${s.topic}/q2`);
        await raw.destroy(); // neither acknowledged

        const got = await paho(s.port(), s.id('sub'), version, 'receive', filter, 2);
        expect(got[0]).toEqual({ sessionPresent: true });
        expect(got.slice(1).map((m) => [m.qos, m.payload, m.dup])).toEqual([
          [1, 'q1', true],
          [2, 'q2', true],
        ]);
      });
    });
  }
}
