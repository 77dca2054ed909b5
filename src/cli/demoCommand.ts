import { createServer, type Server } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { type MqttSensor, startMqttSensor } from '../../firmware-stubs/mqtt-sensor/sensor.js';
import { Agent } from '../agent.js';
import { parseConfig } from '../config/load.js';
import { createLogger } from '../util/logger.js';

/** An in-process stand-in for the cloud broker, which the demo can cut and restore. */
class EmbeddedUpstream {
  private aedes?: Aedes;
  private server?: Server;
  constructor(public port = 0) {}
  async start(): Promise<void> {
    const aedes = await Aedes.createBroker();
    const server = createServer(aedes.handle);
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', () => r()));
    this.port = (server.address() as { port: number }).port;
    this.aedes = aedes;
    this.server = server;
  }
  get up(): boolean {
    return this.server !== undefined;
  }
  async stop(): Promise<void> {
    const { server, aedes } = this;
    this.server = undefined;
    this.aedes = undefined;
    server?.close();
    await new Promise<void>((r) => (aedes ? aedes.close(() => r()) : r()));
  }
}

/** `leafbridge demo`: the agent on embedded defaults, simulated MQTT sensors and an embedded upstream. */
export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string', default: '.data/demo' },
      'broker-port': { type: 'string', default: '1883' },
      'http-port': { type: 'string', default: '8080' },
      sensors: { type: 'string', default: '3' },
      duration: { type: 'string', description: 'stop after this many seconds' },
    },
    strict: true,
  });
  const logger = createLogger({ level: process.env.LEAFBRIDGE_LOG_LEVEL ?? 'warn' });
  const upstream = new EmbeddedUpstream();
  await upstream.start();
  const agent = await startAgentOnFreePorts(values, upstream.port, logger);
  const edgeUrl = `mqtt://127.0.0.1:${agent.addresses.broker.port}`;
  const sensors: MqttSensor[] = [];
  for (let i = 1; i <= Number(values.sensors); i++) {
    sensors.push(await startMqttSensor({ url: edgeUrl, id: `sensor-${i}`, intervalMs: 1000 }));
  }
  const cloud = mqtt.connect(`mqtt://127.0.0.1:${upstream.port}`, {
    protocolVersion: 5,
    reconnectPeriod: 500,
  });
  let arrived = 0;
  cloud.on('message', () => arrived++);
  cloud.on('connect', () => cloud.subscribe('leafbridge/#', { qos: 1 }));
  cloud.on('error', () => {});
  // The cloud sets a desired twin; the sensor applies it and reports it back.
  cloud.publish(
    'leafbridge/demo/devices/sensor-1/twin/desired',
    JSON.stringify({ $version: Date.now(), unit: 'celsius', reportEvery: 1 }),
    {
      qos: 1,
      retain: true,
    },
  );

  const http = `http://127.0.0.1:${agent.addresses.http.port}`;
  process.stdout.write(
    [
      'leafbridge demo is running (everything on 127.0.0.1)',
      `  edge broker     ${edgeUrl}   (try: mosquitto_sub -h 127.0.0.1 -p ${agent.addresses.broker.port} -t 'devices/#' -v)`,
      `  agent HTTP      ${http}/metrics  ${http}/readyz`,
      `  cloud broker    mqtt://127.0.0.1:${upstream.port}   (topics under leafbridge/demo/)`,
      `  sensors         ${sensors.map((s) => s.id).join(', ')}`,
      '  type "u" + Enter to cut or restore the cloud link and watch the outbox fill and drain; Ctrl-C to stop',
      '',
    ].join('\n'),
  );
  const status = setInterval(async () => {
    const outbox = await metricValue(http, 'leafbridge_outbox_messages');
    process.stdout.write(
      `cloud ${upstream.up ? 'up  ' : 'DOWN'}  outbox ${String(outbox).padStart(6)}  arrived at cloud ${arrived}\n`,
    );
  }, 2000);
  const input = process.stdin.isTTY ? createInterface({ input: process.stdin }) : undefined;
  input?.on('line', async (line) => {
    if (line.trim() !== 'u') return;
    if (upstream.up) await upstream.stop();
    else await upstream.start();
  });
  await new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    if (values.duration) setTimeout(done, Number(values.duration) * 1000);
  });
  clearInterval(status);
  input?.close();
  await Promise.all(sensors.map((s) => s.stop()));
  cloud.end(true);
  await agent.stop();
  await upstream.stop();
  return 0;
}

async function startAgentOnFreePorts(
  values: { 'data-dir': string; 'broker-port': string; 'http-port': string },
  upstreamPort: number,
  logger: ReturnType<typeof createLogger>,
): Promise<Agent & { addresses: NonNullable<Agent['addresses']> }> {
  const build = (brokerPort: string, httpPort: string) =>
    parseConfig({
      node: 'demo',
      dataDir: resolve(values['data-dir']),
      broker: { listen: `127.0.0.1:${brokerPort}` },
      http: { listen: `127.0.0.1:${httpPort}` },
      upstream: { url: `mqtt://127.0.0.1:${upstreamPort}`, reconnect: { minDelay: '200ms', maxDelay: '2s' } },
      auth: { allowAnonymous: true },
    });
  for (const ports of [
    [values['broker-port'], values['http-port']],
    ['0', '0'],
  ] as const) {
    const agent = new Agent(build(ports[0], ports[1]), logger);
    try {
      await agent.start();
      return agent as Agent & { addresses: NonNullable<Agent['addresses']> };
    } catch (err) {
      await agent.stop().catch(() => {});
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
    }
  }
  throw new Error('no free ports for the demo');
}

async function metricValue(http: string, name: string): Promise<number> {
  const text = await fetch(`${http}/metrics`).then(
    (r) => r.text(),
    () => '',
  );
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : Number.NaN;
}
