import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { Agent, type AgentAddresses } from '../agent.js';
import { newToken } from '../api/tokenFile.js';
import { parseConfig } from '../config/load.js';
import type { DiscoveryConfigEntry } from '../config/schema.js';
import { errorMessage } from '../util/errors.js';
import { createLogger, type Logger } from '../util/logger.js';
import {
  DEMO_EXTERNAL_HANDLER,
  type DemoDevices,
  type DemoSkip,
  echoConfig,
  mqttSensorsConfig,
  startDemoDevices,
  startDemoExternalHandler,
  startDemoSensors,
} from './demoDevices.js';

/** An in-process stand-in for the cloud broker, which the demo can cut and restore. */
class EmbeddedUpstream {
  private aedes?: Aedes;
  private server?: Server;
  constructor(public port = 0) {}
  async start(): Promise<void> {
    const aedes = await Aedes.createBroker();
    const server = createServer(aedes.handle);
    try {
      await new Promise<void>((listening, fail) => {
        server.once('error', fail);
        server.listen(this.port, '127.0.0.1', () => listening());
      });
    } catch (err) {
      await new Promise<void>((r) => aedes.close(() => r()));
      throw err;
    }
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

type DemoFlags = ReturnType<typeof flags>;

function flags(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string', default: '.data/demo' },
      'broker-port': { type: 'string', default: '1883' },
      'http-port': { type: 'string', default: '8080' },
      sensors: { type: 'string', default: '3' },
      cameras: { type: 'string', default: '1' },
      plcs: { type: 'string', default: '1' },
      serial: { type: 'string', default: '1' },
      modbus: { type: 'string', default: '2' },
      duration: { type: 'string', description: 'stop after this many seconds' },
    },
    strict: true,
  }).values;
}

/**
 * `leafbridge demo`: the agent on embedded defaults (local store, embedded broker, dashboard), simulated
 * devices of every kind with a DiscoveryConfig each, and an embedded upstream broker that `u` + Enter cuts
 * and restores. Everything listens on 127.0.0.1; multicast stays on loopback.
 */
export async function demoCommand(argv: string[]): Promise<number> {
  let values: DemoFlags;
  let counts: Counts;
  try {
    values = flags(argv);
    counts = countsOf(values);
  } catch (err) {
    process.stderr.write(`demo: ${errorMessage(err)}\n${DEMO_USAGE}`);
    return 2;
  }
  // Quiet by default: the cut-and-restore the demo invites would otherwise fill the screen with warnings.
  const logger = createLogger({ level: process.env.LEAFBRIDGE_LOG_LEVEL ?? 'error' });
  const dataDir = resolve(values['data-dir']);
  mkdirSync(dataDir, { recursive: true });
  // Whatever started is stopped, newest first, at the end or when a later step fails.
  const running: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    for (const stop of running.splice(0).reverse()) await stop();
  };
  // A closed stdout (the demo piped into `head`) stops the demo cleanly instead of crashing it.
  const outputGone = new AbortController();
  process.stdout.on('error', () => outputGone.abort());
  try {
    const upstream = new EmbeddedUpstream();
    const [up, started] = await Promise.allSettled([
      upstream.start(),
      startDemoDevices({ dataDir, ...counts, logger }),
    ]);
    if (up.status === 'fulfilled') running.push(() => upstream.stop());
    if (started.status === 'fulfilled') running.push(...started.value.started.map((d) => () => d.stop()));
    if (up.status === 'rejected') throw up.reason;
    if (started.status === 'rejected') throw started.reason;
    const devices = started.value;
    // The external handler watches the simulators' TCP ports and the cloud broker's ("u" turns it offline).
    const targets = [...devices.started.flatMap((d) => d.endpoints ?? []), `127.0.0.1:${upstream.port}`];
    const external = await startDemoExternalHandler(akriDir(dataDir), targets, logger).catch(
      (err: unknown) => {
        devices.skipped.push({ kind: 'external handler', reason: errorMessage(err) });
        return undefined;
      },
    );
    if (external) {
      running.push(() => external.stop());
      devices.started.push(external);
    }
    const fileConfigs = {
      configs: [...devices.started.map((d) => d.config), echoConfig()],
      probeWritePaths: devices.started.flatMap((d) => d.probeWritePaths ?? []),
    };
    const token = demoToken(dataDir);
    const { agent, addresses, notes } = await startAgent(values, dataDir, upstream.port, fileConfigs, logger);
    running.push(() => agent.stop());
    const edgeUrl = `mqtt://127.0.0.1:${addresses.broker.port}`;
    const sensors = await startDemoSensors(edgeUrl, counts.sensors);
    running.push(() => sensors.stop());
    const cloud = startCloud(upstream.port);
    running.push(() => void cloud.client.end(true));
    const simulated = [sensors, ...devices.started];
    printBanner({ addresses, upstream, started: simulated, skipped: devices.skipped, notes, token });
    const status = setInterval(
      () => void printStatus(addresses.http.port, upstream, cloud.arrived, token),
      2000,
    );
    const input = watchInput(upstream);
    running.push(() => {
      clearInterval(status);
      input.close();
    });
    await stopped(counts.duration, outputGone.signal);
  } finally {
    await stopAll();
  }
  return 0;
}

const DEMO_USAGE = `usage: leafbridge demo [--http-port N] [--broker-port N] [--data-dir DIR] [--duration SECONDS]
                      [--sensors N] [--cameras N] [--plcs N] [--serial N] [--modbus N]
  --http-port, --broker-port   default 8080 and 1883; a free port when taken; 0 for any free port
  --data-dir                   the agent's store and the simulators' files (default .data/demo)
  --duration                   stop after this many seconds (default: at Ctrl-C)
  --sensors, --cameras, --plcs, --serial, --modbus
                               how many simulated devices of each kind (default 3, 1, 1, 1, 2)
`;

interface Counts {
  sensors: number;
  cameras: number;
  plcs: number;
  serials: number;
  modbus: number;
  duration?: number;
}

function countsOf(values: DemoFlags): Counts {
  const int = (flag: string, text: string, max: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw new Error(`--${flag} must be an integer from 0 to ${max}`);
    return n;
  };
  int('http-port', values['http-port'], 65535);
  int('broker-port', values['broker-port'], 65535);
  return {
    sensors: int('sensors', values.sensors, 100),
    cameras: int('cameras', values.cameras, 20),
    plcs: int('plcs', values.plcs, 10),
    serials: int('serial', values.serial, 10),
    modbus: int('modbus', values.modbus, 247),
    ...(values.duration !== undefined ? { duration: int('duration', values.duration, 7 * 86_400) } : {}),
  };
}

const tokensFile = (dataDir: string) => join(dataDir, 'http-tokens.yaml');
/** Where the agent serves Akri's agent-registration.sock for the demo's external handler. */
const akriDir = (dataDir: string) => join(dataDir, 'akri');

/**
 * A new read-write token for the agent's HTTP API on every run, its hash in the data directory's tokens
 * file (readable by the user only): the banner prints the token, the dashboard asks for it.
 */
function demoToken(dataDir: string): string {
  const { token, entry } = newToken('demo', 'read-write');
  const text = `# leafbridge demo: made at start, replaced on the next run\ntokens:\n  - ${JSON.stringify(entry)}\n`;
  // A new file (mode 600 from its creation) renamed over the old one: writing into an existing file would keep
  // that file's mode, whatever it is.
  const file = tokensFile(dataDir);
  const fresh = `${file}.new`;
  rmSync(fresh, { force: true });
  writeFileSync(fresh, text, { mode: 0o600, flag: 'wx' });
  renameSync(fresh, file);
  return token;
}

/** The agent's config: embedded defaults, the demo's ports, its DiscoveryConfigs. */
function demoConfig(
  dataDir: string,
  ports: { broker: number; http: number },
  upstreamPort: number,
  files: { configs: DiscoveryConfigEntry[]; probeWritePaths: string[] },
) {
  return parseConfig({
    node: 'demo',
    dataDir,
    broker: { listen: `127.0.0.1:${ports.broker}` },
    http: { listen: `127.0.0.1:${ports.http}`, auth: { tokensFile: tokensFile(dataDir) } },
    upstream: { url: `mqtt://127.0.0.1:${upstreamPort}`, reconnect: { minDelay: '200ms', maxDelay: '2s' } },
    auth: { allowAnonymous: true },
    kubernetes: 'off',
    // Never a real kubelet's: the demo registers no device plugins, even on a Kubernetes node.
    devicePlugins: { dir: join(dataDir, 'no-kubelet') },
    // A device of an earlier run (a serial pty of another number) goes soon.
    discovery: {
      gracePeriod: '30s',
      probeWritePaths: files.probeWritePaths,
      external: { handlers: [DEMO_EXTERNAL_HANDLER], dir: akriDir(dataDir) },
    },
    discoveryConfigs: [...files.configs, mqttSensorsConfig(`mqtt://127.0.0.1:${ports.broker}`)],
  });
}

/**
 * Starts the agent on the asked ports (1883 and 8080 unless told), or on free ones when those are taken:
 * the ports are chosen first, since the mqtt DiscoveryConfig names the broker's.
 */
async function startAgent(
  values: DemoFlags,
  dataDir: string,
  upstreamPort: number,
  files: { configs: DiscoveryConfigEntry[]; probeWritePaths: string[] },
  logger: Logger,
): Promise<{ agent: Agent; addresses: AgentAddresses; notes: string[] }> {
  const notes: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const ports = {
      broker: await usablePort(Number(values['broker-port']), 'edge broker', notes),
      http: await usablePort(Number(values['http-port']), 'dashboard and HTTP API', notes),
    };
    const agent = new Agent(demoConfig(dataDir, ports, upstreamPort, files), logger);
    try {
      const addresses = await agent.start();
      return { agent, addresses, notes };
    } catch (err) {
      await agent.stop().catch(() => {});
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err;
    }
  }
  throw new Error('no free ports for the demo');
}

/** `wanted` if it is free on 127.0.0.1 (0: any), else a free port, with a note saying so. */
async function usablePort(wanted: number, what: string, notes: string[]): Promise<number> {
  const free = await listenOnce(wanted).catch(() => undefined);
  if (free !== undefined) return free;
  const other = await listenOnce(0);
  notes.push(`port ${wanted} is taken: the ${what} is on port ${other}`);
  return other;
}

function listenOnce(port: number): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as { port: number };
      server.close(() => done(bound));
    });
  });
}

/** A cloud-side client: sets sensor-1's desired twin, and counts what arrives from the edge. */
function startCloud(port: number): { client: mqtt.MqttClient; arrived: () => number } {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, reconnectPeriod: 500 });
  let arrived = 0;
  client.on('message', () => arrived++);
  client.on('connect', () => client.subscribe('leafbridge/#', { qos: 1 }));
  client.on('error', () => {});
  // The sensor applies it and reports it back: the dashboard shows both twins.
  client.publish(
    'leafbridge/demo/devices/sensor-1/twin/desired',
    JSON.stringify({ $version: 1, unit: 'celsius', reportEvery: 1 }),
    { qos: 1, retain: true },
  );
  return { client, arrived: () => arrived };
}

function printBanner(o: {
  addresses: AgentAddresses;
  upstream: EmbeddedUpstream;
  started: DemoDevices[];
  skipped: DemoSkip[];
  notes: string[];
  token: string;
}): void {
  const { broker, http } = o.addresses;
  const base = `http://127.0.0.1:${http.port}`;
  const lines = [
    'leafbridge demo is running (everything on 127.0.0.1)',
    `dashboard: ${base}/`,
    `  API token       ${o.token}   (the dashboard asks for it; curl -H 'Authorization: Bearer …'; LEAFBRIDGE_TOKEN for leafbridge get)`,
    `  edge broker     mqtt://127.0.0.1:${broker.port}   (try: mosquitto_sub -h 127.0.0.1 -p ${broker.port} -t 'devices/#' -v)`,
    `  agent HTTP      ${base}/metrics  ${base}/api/v1/devices  ${base}/api/v1/discoveryconfigs`,
    `  cloud broker    mqtt://127.0.0.1:${o.upstream.port}   (topics under leafbridge/demo/)`,
    ...o.started.map((d) => `  simulated       ${d.summary}`),
    '  simulated       1 debug-echo device   echo-1',
    ...o.skipped.map((s) => `  skipped         ${s.kind}: ${s.reason}`),
    ...o.notes.map((n) => `  note            ${n}`),
    '  type "u" + Enter to cut or restore the cloud link and watch the outbox fill and drain; Ctrl-C to stop',
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

async function printStatus(
  httpPort: number,
  upstream: EmbeddedUpstream,
  arrived: () => number,
  token: string,
): Promise<void> {
  const outbox = await metricValue(httpPort, 'leafbridge_outbox_messages', token);
  process.stdout.write(
    `cloud ${upstream.up ? 'up  ' : 'DOWN'}  outbox ${String(outbox).padStart(6)}  arrived at cloud ${arrived()}\n`,
  );
}

/** `u` + Enter on stdin (a terminal or a pipe) cuts or restores the cloud link. */
function watchInput(upstream: EmbeddedUpstream): { close(): void } {
  const input = createInterface({ input: process.stdin });
  let busy = Promise.resolve();
  input.on('line', (line) => {
    if (line.trim() !== 'u') return;
    busy = busy
      .then(async () => {
        if (upstream.up) await upstream.stop();
        else await upstream.start();
        process.stdout.write(upstream.up ? 'cloud link restored\n' : 'cloud link cut\n');
      })
      .catch((err: unknown) => {
        process.stdout.write(`cloud link not restored: ${errorMessage(err)} (try "u" again)\n`);
      });
  });
  return {
    close: () => {
      input.close();
      process.stdin.pause();
      process.stdin.unref?.();
    },
  };
}

function stopped(durationSeconds: number | undefined, signal: AbortSignal): Promise<void> {
  return new Promise<void>((done) => {
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    signal.addEventListener('abort', () => done(), { once: true });
    if (signal.aborted) done();
    if (durationSeconds !== undefined) setTimeout(done, durationSeconds * 1000);
  });
}

async function metricValue(port: number, name: string, token: string): Promise<number> {
  const headers = { authorization: `Bearer ${token}` };
  const text = await fetch(`http://127.0.0.1:${port}/metrics`, { headers }).then(
    (r) => r.text(),
    () => '',
  );
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : Number.NaN;
}
