// What every conformance file shares: the brokers of the file, connections closed after each case, and
// names (client ids, topics) distinct per case, broker and protocol version.
import { afterAll, afterEach, beforeAll } from 'vitest';
import { type BrokerName, FULL, startBrokers, type Target } from '../helpers/conformanceBrokers.js';
import { type ConnectOptions, RawClient, type Version } from '../helpers/rawMqtt.js';

export const BROKERS: readonly BrokerName[] = ['edge', 'mosquitto'];
export const VERSIONS: readonly Version[] = [4, 5];
export const versionName = (v: Version) => (v === 5 ? '5' : '3.1.1');
/** How long a case waits to see that something does not arrive (after a later message did, where it can). */
export const QUIET_MS = 300;
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts both brokers once for the file (beforeAll) and stops them after it. */
export function useBrokers(): (name: BrokerName) => Target {
  const targets = new Map<BrokerName, Target>();
  beforeAll(async () => {
    for (const t of await startBrokers()) targets.set(t.name, t);
  }, 30_000);
  afterAll(async () => {
    await Promise.all([...targets.values()].map((t) => t.stop()));
  });
  return (name) => {
    const t = targets.get(name);
    if (!t) throw new Error(`broker ${name} did not start`);
    return t;
  };
}

/**
 * Per describe block (one broker, one protocol version): `scope(case)` gives the case a topic prefix and client
 * ids of its own (at most 23 characters, the length every broker must accept), and connects as the full user.
 * Its connections are closed after each case, or after the block with `closeAfter: 'all'`.
 */
export function useScope(broker: () => Target, version: Version, closeAfter: 'each' | 'all' = 'each') {
  const open: RawClient[] = [];
  // Concurrent cases (describe.concurrent) must not close each other's connections: those close at the end.
  (closeAfter === 'each' ? afterEach : afterAll)(async () => {
    await Promise.all(open.splice(0).map((c) => c.destroy()));
  });
  return (name: string) => {
    const tag = `${broker().name[0]}${version}`;
    const id = (role: string) => {
      const clientId = `${name}-${tag}-${role}`;
      if (clientId.length > 23) throw new Error(`client id ${clientId} is longer than 23 characters`);
      return clientId;
    };
    const track = (c: RawClient) => {
      open.push(c);
      return c;
    };
    return {
      topic: `conformance/${name}/${tag}`,
      id,
      port: () => broker().port,
      /** Connects as the full user unless `options` says otherwise; throws unless accepted. */
      connect: async (role: string, options: Partial<ConnectOptions> = {}) =>
        track(
          await RawClient.connect(broker().port, version, {
            clientId: id(role),
            username: FULL.username,
            password: Buffer.from(FULL.password),
            ...options,
          }),
        ),
      /** Opens a connection and returns it with its CONNACK, accepted or not. */
      open: async (options: ConnectOptions | Buffer) => {
        const result = await RawClient.open(
          broker().port,
          version,
          Buffer.isBuffer(options)
            ? options
            : { username: FULL.username, password: Buffer.from(FULL.password), ...options },
        );
        track(result.client);
        return result;
      },
      /** Session options that keep the session after a disconnect (for a minute in MQTT 5). */
      persistent: (): Partial<ConnectOptions> =>
        version === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false },
    };
  };
}
