import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { Agent } from '../../src/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';

export interface Received {
  topic: string;
  payload: Buffer;
  msgId: string | undefined;
  correlationData: Buffer | undefined;
  retain: boolean;
}

/** Connects and resolves once CONNACK arrived (rejects on a refused CONNECT). */
export function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, {
      reconnectPeriod: 0,
      connectTimeout: 5000,
      protocolVersion: 5,
      ...options,
    });
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}

/** A subscriber that records everything it receives on `filter`. */
export async function collect(url: string, filter: string, options: IClientOptions = {}) {
  const client = await connect(url, options);
  const messages: Received[] = [];
  client.on('message', (topic, payload, packet) => {
    const props = (
      packet as { properties?: { userProperties?: Record<string, string>; correlationData?: Buffer } }
    ).properties;
    const id = props?.userProperties?.['lb-msg-id'];
    messages.push({
      topic,
      payload,
      msgId: Array.isArray(id) ? id[0] : id,
      correlationData: props?.correlationData,
      retain: packet.retain,
    });
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, messages };
}

/** The agent in this process (faster than a child process where no crash is involved). */
export async function startInProcessAgent(config: Record<string, unknown>, logger: Logger = silentLogger()) {
  const agent = new Agent(parseConfig(config), logger);
  const addresses = await agent.start();
  return {
    agent,
    url: `mqtt://127.0.0.1:${addresses.broker.port}`,
    http: `http://127.0.0.1:${addresses.http.port}`,
  };
}

/** One sample of a metric from the agent's /metrics (labels included in `name` when given). */
export async function metric(http: string, name: string): Promise<number> {
  const text = await (await fetch(`${http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not found`);
  return Number(line.slice(name.length + 1));
}

export { until, within } from './wait.js';
