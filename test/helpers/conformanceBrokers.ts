// The two brokers the conformance suite (test/conformance/) runs every case against: the edge broker as users
// run it (`leafbridge agent`, a child process) and mosquitto as the reference, with the same users and ACLs.
import { hashPassword } from '../../src/util/password.js';
import { agentConfig } from './agentConfig.js';
import { Mosquitto } from './mosquitto.js';
import { type AgentProcess, startAgent, stopProcess, tempDir } from './processes.js';

/** A user allowed every topic (`$`-topics included), and one allowed only under `conformance/allowed/`. */
export const FULL = { username: 'conformance', password: 'conformance-secret' } as const;
export const RESTRICTED = { username: 'restricted', password: 'restricted-secret' } as const;
export const ALLOWED_PREFIX = 'conformance/allowed';
/** The largest packet both brokers accept (edge `broker.maxPacketSize`, mosquitto `max_packet_size`). */
export const MAX_PACKET_SIZE = 64 * 1024;

export type BrokerName = 'edge' | 'mosquitto';

export interface Target {
  name: BrokerName;
  port: number;
  stop(): Promise<void>;
}

export async function startEdge(): Promise<Target & { agent: AgentProcess }> {
  const dir = tempDir('lb-conformance-');
  const user = async (u: { username: string; password: string }, filters: string[]) => ({
    username: u.username,
    passwordHash: await hashPassword(u.password),
    publish: filters,
    subscribe: filters,
  });
  const config = agentConfig(dir.path, undefined, {
    broker: { listen: '127.0.0.1:0', maxPacketSize: MAX_PACKET_SIZE },
    auth: {
      allowAnonymous: false,
      users: [await user(FULL, ['#']), await user(RESTRICTED, [`${ALLOWED_PREFIX}/#`])],
    },
  });
  const agent = await startAgent(dir.path, config);
  return {
    name: 'edge',
    port: agent.broker.port,
    agent,
    stop: async () => {
      await stopProcess(agent.child);
      dir.remove();
    },
  };
}

export async function startMosquitto(): Promise<Target> {
  const mosquitto = new Mosquitto({
    users: [
      { ...FULL, acl: ['topic readwrite #', 'topic readwrite $conformance/#'] },
      { ...RESTRICTED, acl: [`topic readwrite ${ALLOWED_PREFIX}/#`] },
    ],
    extra: [
      `max_packet_size ${MAX_PACKET_SIZE}`,
      // Without it, mosquitto 2.0.11 sends a 3.1.1 client one copy of a message that matches overlapping
      // subscriptions, at the QoS of one of them, not the highest ([MQTT-3.3.5-1]); a copy per subscription
      // is the other behaviour 3.1.1 allows.
      'allow_duplicate_messages true',
    ],
  });
  const port = await mosquitto.start();
  return { name: 'mosquitto', port, stop: () => mosquitto.stop() };
}

/** Both brokers, started side by side. */
export async function startBrokers(): Promise<Target[]> {
  return Promise.all([startEdge(), startMosquitto()]);
}
