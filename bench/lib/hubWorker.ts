// The twin hub (src/hub/) in a process of its own for `npm run bench -- hub`, or in its place the baseline: a plain
// mqtt.js subscriber that only counts what the broker delivers. Forked with an IPC channel.
//   {cmd:'start', brokerUrl, kubeconfig, namespace, intervalMs} -> {ev:'ready', devices, ms}
//   {cmd:'plain', brokerUrl, filter}                   -> {ev:'ready'}; then counts messages on `filter`
//   {cmd:'metrics'}                                    -> {ev:'metrics', metrics, at}
//   {cmd:'gc'}                                         -> {ev:'gc', heapUsedMB} after a full collection
//   {cmd:'profile-start'} / {cmd:'profile-stop', file} -> {ev:'profiled', file} (V8 CPU profile via the inspector)
//   {cmd:'close'}                                      -> stops the hub (drains its writes) and exits
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { KubeConfig } from '@kubernetes/client-node';
import mqtt, { type MqttClient } from 'mqtt';
import { TwinHub } from '../../src/hub/hub.js';
import { createLogger } from '../../src/util/logger.js';
import { childFatal, exitWithParent, now } from './util.js';

exitWithParent();

let hub: TwinHub | undefined;
let plain: MqttClient | undefined;
let plainReceived = 0;
let session: Session | undefined;
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

async function start(m: {
  brokerUrl: string;
  kubeconfig: string;
  namespace?: string;
  intervalMs: number;
}): Promise<void> {
  const started = now();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(m.kubeconfig);
  hub = new TwinHub({
    brokerUrl: m.brokerUrl,
    // Replicas of a bench share a hostname: each its own client id (its own session).
    clientId: `leafbridge-hub-bench-${process.pid}`,
    kubeConfig,
    namespace: m.namespace ?? 'default',
    intervalMs: m.intervalMs,
    logger: createLogger({ level: 'warn' }),
  });
  await hub.start();
  process.send?.({ ev: 'ready', devices: hub.devices, ms: now() - started });
}

function startPlain(m: { brokerUrl: string; filter: string }): void {
  const client = mqtt.connect(m.brokerUrl, { protocolVersion: 5, clean: true, reconnectPeriod: 0 });
  plain = client;
  client.on('message', () => {
    plainReceived++;
  });
  client.once('connect', () =>
    client.subscribe(m.filter, { qos: 1 }, (err) => {
      if (err) childFatal(err);
      else process.send?.({ ev: 'ready' });
    }),
  );
  client.once('error', childFatal);
}

function metrics(): void {
  const m = hub
    ? hub.metrics
    : { received: { reported: plainReceived, status: 0, agentStatus: 0, telemetry: 0, other: 0 } };
  const loop = {
    p50: loopDelay.percentile(50) / 1e6,
    p99: loopDelay.percentile(99) / 1e6,
    max: loopDelay.max / 1e6,
  };
  loopDelay.reset();
  const mem = process.memoryUsage();
  const heap = { heapUsedMB: mem.heapUsed / 2 ** 20, externalMB: mem.external / 2 ** 20 };
  process.send?.({ ev: 'metrics', metrics: m, loopMs: loop, memory: mem.rss, heap, at: now() });
}

function post<T>(s: Session, method: string): Promise<T> {
  return new Promise((resolve, reject) =>
    s.post(method, (err, result) => (err ? reject(err) : resolve(result as T))),
  );
}

async function profileStart(): Promise<void> {
  session = new Session();
  session.connect();
  await post(session, 'Profiler.enable');
  await post(session, 'Profiler.start');
  process.send?.({ ev: 'profiling' });
}

async function profileStop(file: string): Promise<void> {
  const s = session;
  if (!s) return void process.send?.({ ev: 'profiled', file: undefined });
  const { profile } = await post<{ profile: unknown }>(s, 'Profiler.stop');
  writeFileSync(file, JSON.stringify(profile));
  s.disconnect();
  session = undefined;
  process.send?.({ ev: 'profiled', file });
}

async function close(): Promise<void> {
  await hub?.stop(3000);
  plain?.end(true);
  process.exit(0);
}

process.on('message', (m: { cmd: string } & Record<string, unknown>) => {
  switch (m.cmd) {
    case 'start':
      start(m as never).catch(childFatal);
      break;
    case 'plain':
      startPlain(m as never);
      break;
    case 'metrics':
      metrics();
      break;
    case 'gc': {
      // Diagnostics: the live heap after a full collection.
      setFlagsFromString('--expose-gc');
      (runInNewContext('gc') as () => void)();
      process.send?.({ ev: 'gc', heapUsedMB: process.memoryUsage().heapUsed / 2 ** 20 });
      break;
    }
    case 'profile-start':
      profileStart().catch(childFatal);
      break;
    case 'profile-stop':
      profileStop(m.file as string).catch(childFatal);
      break;
    case 'close':
      close().catch(childFatal);
      break;
  }
});
