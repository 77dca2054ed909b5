// One measured run of an edge (the agent, or a mosquitto bridge beside it) between leaf publishers and one
// upstream mosquitto with a counting subscriber, for `npm run bench -- edge` (and `sync`). Edge CPU is utime +
// stime from /proc/<pid>/stat over the measured window; peak memory is the edge's VmHWM at the end of the run.
import { join } from 'node:path';
import { AgentProcess } from './agent.js';
import { MosquittoProcess } from './mosquitto.js';
import {
  BenchChild,
  type ChildEvent,
  lib,
  monotonicMicros,
  procTicks,
  readMemory,
  round1,
  Scope,
  sleep,
  tempDir,
} from './util.js';

export const EDGE_NODE = 'bench-1';
export const UPSTREAM_PREFIX = 'leafbridge';

/** Which edge sits between the leaf clients and the upstream: `direct` has none (publishers on the upstream). */
export type EdgeKind = 'mosquitto' | 'agent' | 'agent-full' | 'direct';

export interface FastShape {
  clients: number;
  messagesPerClient: number;
  window: number;
  payloadBytes: number;
  warmupMessages: number;
  maxRunMs: number;
}

export interface SlowShape {
  sensors: number;
  processes: number;
  seconds: number;
  payloadBytes: number;
  connectConcurrency: number;
}

export interface Window {
  fromUs: number;
  toUs: number;
}

export interface FastRun {
  edge: EdgeKind;
  messages: number;
  acked: number;
  errors: number;
  unique: number;
  duplicates: number;
  /** Unique arrivals upstream / (last arrival − first publish). */
  msgPerSec: number;
  ms: number;
  edgeCpuS?: number;
  edgeCpuUsPerMsg?: number;
  edgePeakRssMB?: number;
  timedOut: boolean;
  window: Window;
  profileFile?: string;
}

export interface SlowRun {
  edge: EdgeKind;
  sensors: number;
  connectMs: number;
  messages: number;
  acked: number;
  errors: number;
  unique: number;
  edgeCpuS: number;
  edgeCpuConnectS: number;
  edgeCpuPublishS: number;
  edgeRssIdleMB: number;
  edgeRssConnectedMB: number;
  /** (RSS with every sensor connected − RSS before) / sensors. */
  kBPerConnection: number;
  edgePeakRssMB: number;
  timedOut: boolean;
  window: Window;
  profileFile?: string;
}

interface Edge {
  url: string;
  /** utime + stime of the edge's processes, in ticks of 10 ms. */
  cpuTicks: () => number | undefined;
  /** VmRSS and VmHWM of the edge, MB (see `agentMemory`). */
  memory: () => { rssMB: number; hwmMB: number } | undefined;
  stop: () => Promise<unknown>;
}

function oneProcess(pid: number): Pick<Edge, 'cpuTicks' | 'memory'> {
  return { cpuTicks: () => procTicks(pid), memory: () => readMemory(pid) };
}

/**
 * A relaunched agent is two processes (src/cli/runtime.ts): its CPU is both, its memory the agent process's plus
 * what the thin parent holds of its own (RssAnon; the parent's file pages are Node's, shared with the child).
 */
function agentProcesses(parent: number, worker: number): Pick<Edge, 'cpuTicks' | 'memory'> {
  if (parent === worker) return oneProcess(worker);
  return {
    cpuTicks: () => {
      const a = procTicks(parent);
      const b = procTicks(worker);
      return a === undefined || b === undefined ? undefined : a + b;
    },
    memory: () => {
      const p = readMemory(parent);
      const w = readMemory(worker);
      return p && w ? { rssMB: round1(w.rssMB + p.anonMB), hwmMB: round1(w.hwmMB + p.anonMB) } : undefined;
    },
  };
}

export interface AgentLaunch {
  nodeArgs: string[];
  rateLimit: { messagesPerSecond: number; burst: number };
  upstreamInflight: number;
  profileDir?: string;
}

/** The upstream mosquitto with a counting subscriber on it, and the edge under test pointed at it. */
async function setUp(scope: Scope, kind: EdgeKind, launch: AgentLaunch) {
  const upDir = scope.add(tempDir('lb-bench-up-'), (d) => d.remove());
  const upstream = scope.add(new MosquittoProcess(upDir.path), (m) => m.stop());
  await upstream.start();
  const sub = scope.add(new BenchChild('subscriber', lib('subscriber.js')), (c) => c.stop());
  const filter = kind === 'direct' ? 'devices/#' : `${UPSTREAM_PREFIX}/+/devices/#`;
  await sub.request({ cmd: 'connect', url: upstream.url, filter }, 'subscribed', 10_000);
  const edge = await startEdge(scope, kind, upstream, launch);
  return { upstream, sub, edge };
}

async function startEdge(
  scope: Scope,
  kind: EdgeKind,
  upstream: MosquittoProcess,
  launch: AgentLaunch,
): Promise<Edge> {
  if (kind === 'direct') return { ...oneProcess(upstream.pid), url: upstream.url, stop: async () => {} };
  const dir = scope.add(tempDir('lb-bench-edge-'), (d) => d.remove());
  if (kind === 'mosquitto') {
    const m = scope.add(
      new MosquittoProcess(dir.path, {
        port: upstream.port,
        remotePrefix: `${UPSTREAM_PREFIX}/${EDGE_NODE}/`,
        clientId: `mosquitto-bridge-${EDGE_NODE}`,
      }),
      (x) => x.stop(),
    );
    await m.start();
    return { ...oneProcess(m.pid), url: m.url, stop: () => m.stop() };
  }
  const config = {
    node: EDGE_NODE,
    dataDir: join(dir.path, 'data'),
    log: { level: 'info' },
    broker: { listen: '127.0.0.1:0', rateLimit: launch.rateLimit },
    http: { listen: '127.0.0.1:0', auth: { anonymous: 'read-only' } }, // loopback only: the bench reads /metrics
    upstream: {
      url: upstream.url,
      prefix: UPSTREAM_PREFIX,
      protocolVersion: 5,
      inflight: launch.upstreamInflight,
      reconnect: { minDelay: '50ms', maxDelay: '250ms' },
    },
    store: { synchronous: kind === 'agent-full' ? 'full' : 'normal' },
    auth: { allowAnonymous: true },
    kubernetes: 'off',
  };
  const profile = launch.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${launch.profileDir}`] : [];
  const agent = scope.add(new AgentProcess(dir.path, config, [...launch.nodeArgs, ...profile]), (a) =>
    a.stop(),
  );
  await agent.start();
  if ((await agent.waitForMetric('leafbridge_upstream_connected', (v) => v === 1, 10_000)) === undefined)
    throw new Error(`agent did not connect upstream\n${agent.tail()}`);
  return { ...agentProcesses(agent.pid, agent.workerPid), url: agent.brokerUrl, stop: () => agent.stop() };
}

/** Publishers keep a window of QoS 1 PUBLISHes each; counted at the upstream subscriber. */
async function deliver(pub: BenchChild, sub: BenchChild, n: number, shape: FastShape) {
  await sub.request({ cmd: 'expect', n, maxMs: shape.maxRunMs }, 'expecting', 5_000);
  const reached = sub.next('reached', shape.maxRunMs + 5_000);
  const done = await pub.request(
    { cmd: 'run', total: n, window: shape.window, payloadBytes: shape.payloadBytes, maxMs: shape.maxRunMs },
    'done',
    shape.maxRunMs + 5_000,
  );
  return { done, r: await reached };
}

/** 20 fast publishers (the first shape): throughput, edge CPU per message, edge peak RSS. */
export async function fastRun(kind: EdgeKind, shape: FastShape, launch: AgentLaunch): Promise<FastRun> {
  const scope = new Scope();
  try {
    const { sub, edge } = await setUp(scope, kind, launch);
    const pub = scope.add(new BenchChild('publishers', lib('publisher.js')), (c) => c.stop());
    await pub.request(
      { cmd: 'connect', url: edge.url, clients: shape.clients, protocolVersion: 4 },
      'connected',
      15_000,
    );
    await deliver(pub, sub, shape.warmupMessages, shape);
    await sleep(500);
    const n = shape.clients * shape.messagesPerClient;
    const fromUs = monotonicMicros();
    const ticks0 = edge.cpuTicks();
    const { done, r } = await deliver(pub, sub, n, shape);
    const ticks1 = edge.cpuTicks();
    const toUs = monotonicMicros();
    const hwm = kind === 'direct' ? undefined : edge.memory()?.hwmMB;
    const ms = (r.lastAt as number) - (done.firstPublishAt as number);
    const unique = r.unique as number;
    const cpuS = ticks0 !== undefined && ticks1 !== undefined ? (ticks1 - ticks0) / 100 : undefined;
    await pub.stop();
    await edge.stop();
    return {
      edge: kind,
      messages: n,
      acked: done.acked as number,
      errors: done.errors as number,
      unique,
      duplicates: r.duplicates as number,
      msgPerSec: Math.round(unique / (ms / 1000)),
      ms: round1(ms),
      ...(kind === 'direct' || cpuS === undefined
        ? {}
        : { edgeCpuS: cpuS, edgeCpuUsPerMsg: round1((cpuS * 1e6) / unique) }),
      ...(hwm !== undefined ? { edgePeakRssMB: hwm } : {}),
      timedOut: Boolean(done.timedOut) || Boolean(r.timedOut),
      window: { fromUs, toUs },
    };
  } finally {
    await scope.close();
  }
}

/** Thousands of sensors at 1 Hz (the second shape), spread over a few processes. */
export async function slowRun(kind: EdgeKind, shape: SlowShape, launch: AgentLaunch): Promise<SlowRun> {
  const scope = new Scope();
  try {
    const { sub, edge } = await setUp(scope, kind, launch);
    await sleep(1_000);
    const idle = edge.memory();
    const fromUs = monotonicMicros();
    const ticks0 = edge.cpuTicks() ?? 0;
    const per = Math.ceil(shape.sensors / shape.processes);
    const children: BenchChild[] = [];
    for (let i = 0; i < shape.processes; i++)
      children.push(scope.add(new BenchChild(`sensors-${i}`, lib('sensors.js')), (c) => c.stop(10_000)));
    const counts = children.map((_, i) => Math.max(0, Math.min(per, shape.sensors - i * per)));
    const connected = await Promise.all(
      children.map((c, i) =>
        c.request(
          {
            cmd: 'connect',
            url: edge.url,
            clients: counts[i],
            idPrefix: `s${i}-`,
            concurrency: shape.connectConcurrency,
          },
          'connected',
          120_000,
        ),
      ),
    );
    await sleep(1_000);
    const atConnected = edge.memory();
    const ticksConnected = edge.cpuTicks() ?? 0;
    const n = shape.sensors * shape.seconds;
    const maxMs = shape.seconds * 1000 + 60_000;
    await sub.request({ cmd: 'expect', n, maxMs }, 'expecting', 5_000);
    const reached = sub.next('reached', maxMs + 5_000);
    const dones: ChildEvent[] = await Promise.all(
      children.map((c) =>
        c.request({ cmd: 'run', seconds: shape.seconds, payloadBytes: shape.payloadBytes }, 'done', maxMs),
      ),
    );
    const r = await reached;
    const ticksEnd = edge.cpuTicks() ?? 0;
    const toUs = monotonicMicros();
    const hwm = edge.memory()?.hwmMB ?? Number.NaN;
    for (const c of children) await c.stop(10_000);
    await edge.stop();
    const sum = (k: string) => dones.reduce((a, d) => a + (d[k] as number), 0);
    const idleMB = idle?.rssMB ?? Number.NaN;
    const connectedMB = atConnected?.rssMB ?? Number.NaN;
    return {
      edge: kind,
      sensors: shape.sensors,
      connectMs: round1(Math.max(...connected.map((c) => c.ms as number))),
      messages: n,
      acked: sum('acked'),
      errors: sum('errors'),
      unique: r.unique as number,
      edgeCpuS: (ticksEnd - ticks0) / 100,
      edgeCpuConnectS: (ticksConnected - ticks0) / 100,
      edgeCpuPublishS: (ticksEnd - ticksConnected) / 100,
      edgeRssIdleMB: idleMB,
      edgeRssConnectedMB: connectedMB,
      kBPerConnection: round1(((connectedMB - idleMB) * 1024) / shape.sensors),
      edgePeakRssMB: hwm,
      timedOut: Boolean(r.timedOut),
      window: { fromUs, toUs },
    };
  } finally {
    await scope.close();
  }
}
