import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/util/password.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { connect, startInProcessAgent } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';

// Issue 18 point 1 with an independent client: Debian's python3-paho-mqtt (scripts/install-test-deps.sh).
const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./pahoSession.py', import.meta.url));
const interop = { username: 'interop', password: 'interop-secret' } as const;

function paho(url: string, clientId: string, version: 4 | 5, action: 'subscribe' | 'receive') {
  const { hostname, port } = new URL(url);
  const args = [
    SCRIPT,
    hostname,
    port,
    clientId,
    String(version),
    action,
    interop.username,
    interop.password,
  ];
  return new Promise<Record<string, unknown>[]>((resolve, reject) =>
    execFile(PYTHON, args, { timeout: 15_000 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`paho ${action}: ${err.message}\n${stderr}`))
        : resolve(
            stdout
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l) as Record<string, unknown>),
          ),
    ),
  );
}

describe('edge broker: offline queueing for a Paho (Python) persistent session', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  for (const version of [4, 5] as const) {
    it(`queues QoS 1 and 2 while offline, across an agent restart (MQTT ${version === 5 ? '5' : '3.1.1'})`, async () => {
      const dir = tempDir();
      cleanups.push(() => dir.remove());
      const passwordHash = await hashPassword(interop.password);
      const config = agentConfig(dir.path, undefined, {
        auth: {
          allowAnonymous: false,
          users: [{ username: interop.username, passwordHash, publish: ['#'], subscribe: ['#'] }],
        },
      });
      let edge = await startInProcessAgent(config);
      const id = `paho-v${version}`;
      await paho(edge.url, id, version, 'subscribe');
      const pub = await connect(edge.url, {
        ...interop,
        clientId: `pub-v${version}`,
        protocolVersion: version,
      });
      await pub.publishAsync('TopicA/B', 'qos0', { qos: 0 });
      await pub.publishAsync('Topic/C', 'qos1', { qos: 1 });
      await pub.publishAsync('TopicA/C', 'qos2', { qos: 2 });
      await pub.endAsync();
      await edge.agent.stop();
      edge = await startInProcessAgent(config);
      cleanups.push(() => edge.agent.stop());

      const lines = await paho(edge.url, id, version, 'receive');
      expect(lines[0]).toEqual({ sessionPresent: true });
      const payloads = lines.slice(1).map((l) => l.payload);
      expect(payloads.filter((p) => p !== 'qos0').sort()).toEqual(['qos1', 'qos2']);
    });
  }
});
