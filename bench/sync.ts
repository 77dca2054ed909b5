// `npm run bench -- sync`: the sync path of the edge agent against its peers, measured in one run.
//   (1) leaf→upstream QoS 1 throughput through the agent vs the same publishers straight to the upstream broker
//   (2) durable ingest with the upstream down vs the same publishers into a plain in-memory aedes
//   (3) drain of the outbox (filled by (2)) once the upstream broker comes up
//   (4) agent RSS idle and under load
// Every process is on 127.0.0.1; brokers and the agent listen on port 0 and report their port (the upstream of
// (2)/(3) gets a port that was free a moment before, since it must come up on the URL the agent was given).
// Each pair runs `reps` times interleaved (peer, agent, peer, agent); a figure is the median over the reps with
// its min–max spread (a ratio: the median of the per-pair ratios), and targets are judged on the median. Every
// run is in the JSON with its CPU split.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_NODE_FLAGS } from '../src/cli/runtime.js';
import { measureEdges } from './edge.js';
import { AgentProcess } from './lib/agent.js';
import { type ProfileSummary, summarizeProfile } from './lib/cpuprofile.js';
import type { BenchOptions } from './lib/options.js';
import {
  cpuLine,
  fmt,
  printTail,
  type Row,
  strip,
  type Target,
  table,
  target,
  writeResults,
} from './lib/report.js';
import { medianRun, overReps, overRepsOf, repText } from './lib/stats.js';
import {
  BenchChild,
  type ChildEvent,
  CpuMeter,
  type CpuSplit,
  freePort,
  lib,
  type MemoryReading,
  machineInfo,
  monotonicMicros,
  now,
  RssSampler,
  readMemory,
  round1,
  round3,
  Scope,
  sleep,
  tempDir,
} from './lib/util.js';

const PARAMS = {
  publisherClients: 20,
  windowPerClient: 100,
  payloadBytes: 100,
  publisherProtocolVersion: 4 as 4 | 5,
  topic: 'devices/dev-<i>/telemetry/t',
  warmupMessages: 10_000,
  throughputMessages: 100_000,
  /** (2) publishes warm-up + the rest, so the outbox holds this many when (3) starts. */
  outboxMessages: 200_000,
  /** Bound on any one publish or receive run. */
  maxRunMs: 40_000,
  idleSettleMs: 2_000,
  rssSampleEveryMs: 100,
  metricsPollMs: 200,
  agent: {
    node: 'bench-1',
    upstreamProtocolVersion: 5,
    upstreamInflight: 1000,
    reconnect: { minDelay: '50ms', maxDelay: '250ms' },
    rateLimit: { messagesPerSecond: 1_000_000, burst: 1_000_000 },
    rateLimitNote:
      'the per-client rate limit (default 2000 msg/s, burst 10000) is lifted: it would cap 20 clients at 40k msg/s',
    storeSynchronous: 'normal',
    logLevel: 'info',
  },
  subscriber: 'one mqtt.js MQTT 5 client, QoS 1, own process',
  upstreamBroker: 'aedes 2 (in-memory persistence, the aedes default), own process',
  drainStart:
    'the upstream broker starts on the URL port refusing only the agent (CONNACK 3) until the subscriber is in; ' +
    'time runs from then',
};

const TARGETS = {
  throughputRatio: 0.7,
  ingestRatio: 0.8,
  drainMsgPerSec: 25_000,
  rssUnderLoadMB: 120,
};

function agentConfig(dataDir: string, upstreamUrl: string): Record<string, unknown> {
  const a = PARAMS.agent;
  return {
    node: a.node,
    dataDir,
    log: { level: a.logLevel },
    broker: { listen: '127.0.0.1:0', rateLimit: a.rateLimit },
    http: { listen: '127.0.0.1:0', auth: { anonymous: 'read-write' } }, // loopback only: the bench measures, not guards
    upstream: {
      url: upstreamUrl,
      protocolVersion: a.upstreamProtocolVersion,
      inflight: a.upstreamInflight,
      reconnect: a.reconnect,
    },
    store: { synchronous: a.storeSynchronous },
    auth: { allowAnonymous: true },
    kubernetes: 'off',
  };
}

async function startBroker(
  scope: Scope,
  port = 0,
  gatePrefix?: string,
): Promise<{ b: BenchChild; url: string }> {
  const b = scope.add(
    new BenchChild('aedes', lib('aedesServer.js'), [String(port), ...(gatePrefix ? [gatePrefix] : [])]),
    (c) => c.stop(),
  );
  const ev = await b.next('listening', 10_000);
  return { b, url: `mqtt://127.0.0.1:${ev.port as number}` };
}

async function startSubscriber(scope: Scope, url: string, filter: string): Promise<BenchChild> {
  const s = scope.add(new BenchChild('subscriber', lib('subscriber.js')), (c) => c.stop());
  await s.request({ cmd: 'connect', url, filter }, 'subscribed', 10_000);
  return s;
}

async function startPublishers(scope: Scope, url: string): Promise<BenchChild> {
  const p = scope.add(new BenchChild('publishers', lib('publisher.js')), (c) => c.stop());
  await p.request(
    {
      cmd: 'connect',
      url,
      clients: PARAMS.publisherClients,
      protocolVersion: PARAMS.publisherProtocolVersion,
    },
    'connected',
    15_000,
  );
  return p;
}

/** The agent runs with its production Node flags; LEAFBRIDGE_BENCH_AGENT_NODE_ARGS replaces them (e.g. '' for Node's defaults). */
const EXTRA_AGENT_ARGS = (process.env.LEAFBRIDGE_BENCH_AGENT_NODE_ARGS ?? AGENT_NODE_FLAGS.join(' '))
  .split(/\s+/)
  .filter(Boolean);

async function startAgent(scope: Scope, upstreamUrl: string, nodeArgs: string[] = []) {
  const dir = scope.add(tempDir('lb-bench-'), (d) => d.remove());
  const agent = scope.add(
    new AgentProcess(dir.path, agentConfig(join(dir.path, 'data'), upstreamUrl), [
      ...EXTRA_AGENT_ARGS,
      ...nodeArgs,
    ]),
    (a) => a.stop(),
  );
  await agent.start();
  return agent;
}

interface Window {
  fromUs: number;
  toUs: number;
}

interface PublishResult {
  messages: number;
  acked: number;
  errors: number;
  ms: number;
  msgPerSec: number;
  timedOut: boolean;
  cpu?: CpuSplit;
  window: Window;
}

function runCommand(n: number): Record<string, unknown> {
  return {
    cmd: 'run',
    total: n,
    window: PARAMS.windowPerClient,
    payloadBytes: PARAMS.payloadBytes,
    maxMs: PARAMS.maxRunMs,
  };
}

/** One publish run; the rate is PUBACKs per second at the publishers. */
async function publish(pub: BenchChild, n: number, meter?: Record<string, number>): Promise<PublishResult> {
  const cpu = meter && new CpuMeter(meter);
  const fromUs = monotonicMicros();
  const done = await pub.request(runCommand(n), 'done', PARAMS.maxRunMs + 5_000);
  const toUs = monotonicMicros();
  return { ...publishResult(n, done, { fromUs, toUs }), ...(cpu ? { cpu: cpu.stop() } : {}) };
}

function publishResult(n: number, done: ChildEvent, window: Window): PublishResult {
  const acked = done.acked as number;
  const ms = (done.lastAckAt as number) - (done.firstPublishAt as number);
  return {
    messages: n,
    acked,
    errors: done.errors as number,
    ms: round1(ms),
    msgPerSec: Math.round(acked / (ms / 1000)),
    timedOut: done.timedOut as boolean,
    window,
  };
}

interface DeliveryResult extends PublishResult {
  arrived: number;
  unique: number;
  duplicates: number;
  /** Publisher-side PUBACK rate of the same run. */
  ackedPerSec: number;
}

/** One publish run counted at the subscriber: unique arrivals / (last arrival − first publish). */
async function publishAndReceive(
  pub: BenchChild,
  sub: BenchChild,
  n: number,
  meter?: Record<string, number>,
): Promise<DeliveryResult> {
  await sub.request({ cmd: 'expect', n, maxMs: PARAMS.maxRunMs }, 'expecting', 5_000);
  const reached = sub.next('reached', PARAMS.maxRunMs + 5_000);
  const cpu = meter && new CpuMeter(meter);
  const fromUs = monotonicMicros();
  const done = await pub.request(runCommand(n), 'done', PARAMS.maxRunMs + 5_000);
  const r = await reached;
  const toUs = monotonicMicros();
  const split = cpu?.stop();
  const published = publishResult(n, done, { fromUs, toUs });
  const ms = (r.lastAt as number) - (done.firstPublishAt as number);
  const unique = r.unique as number;
  return {
    ...published,
    arrived: r.count as number,
    unique,
    duplicates: r.duplicates as number,
    ackedPerSec: published.msgPerSec,
    ms: round1(ms),
    msgPerSec: Math.round(unique / (ms / 1000)),
    timedOut: published.timedOut || (r.timedOut as boolean),
    ...(split ? { cpu: split } : {}),
  };
}

// ---------------------------------------------------------------------------------------------- runs

async function directThroughput(): Promise<DeliveryResult> {
  const scope = new Scope();
  try {
    const up = await startBroker(scope);
    const sub = await startSubscriber(scope, up.url, 'devices/#');
    const pub = await startPublishers(scope, up.url);
    await publishAndReceive(pub, sub, PARAMS.warmupMessages);
    await sleep(500);
    return await publishAndReceive(pub, sub, PARAMS.throughputMessages, {
      publishers: pub.pid,
      upstream: up.b.pid,
      subscriber: sub.pid,
    });
  } finally {
    await scope.close();
  }
}

interface AgentThroughput {
  run: DeliveryResult;
  idle: { rssMB: number; hwmMB: number } | undefined;
  load: { peakRssMB: number; hwmMB: number | undefined; atPeak: Record<string, number> | undefined };
  outboxDrainedAfterRun: boolean;
  profileFile?: string;
  logLevels: Record<string, number>;
}

async function agentThroughput(profileDir?: string): Promise<AgentThroughput> {
  const scope = new Scope();
  try {
    const up = await startBroker(scope);
    const sub = await startSubscriber(scope, up.url, 'leafbridge/+/devices/#');
    const agent = await startAgent(scope, up.url, profileArgs(profileDir));
    if ((await agent.waitForMetric('leafbridge_upstream_connected', (v) => v === 1, 10_000)) === undefined)
      throw new Error(`agent did not connect upstream\n${agent.tail()}`);
    await sleep(PARAMS.idleSettleMs);
    const idle = readMemory(agent.pid);
    const pub = await startPublishers(scope, agent.brokerUrl);
    const rss = new RssSampler(agent.pid, PARAMS.rssSampleEveryMs).start();
    const breakdown = agent.watchMemory();
    await publishAndReceive(pub, sub, PARAMS.warmupMessages);
    await sleep(500);
    const run = await publishAndReceive(pub, sub, PARAMS.throughputMessages, {
      publishers: pub.pid,
      agent: agent.pid,
      upstream: up.b.pid,
      subscriber: sub.pid,
    });
    const drained =
      (await agent.waitForMetric('leafbridge_outbox_messages', (v) => v === 0, 10_000)) !== undefined;
    const load = rss.stop();
    const atPeak = { ...(await breakdown()), ...procSplit(load.atPeak) };
    const hwm = readMemory(agent.pid)?.hwmMB;
    await pub.stop();
    await agent.stop();
    return {
      run,
      idle,
      load: { peakRssMB: load.peakRssMB, hwmMB: hwm, atPeak },
      outboxDrainedAfterRun: drained,
      ...(profileDir ? { profileFile: newestProfile(profileDir) } : {}),
      logLevels: agent.levels,
    };
  } finally {
    await scope.close();
  }
}

async function plainIngest(): Promise<PublishResult> {
  const scope = new Scope();
  try {
    const up = await startBroker(scope);
    const pub = await startPublishers(scope, up.url);
    await publish(pub, PARAMS.warmupMessages);
    await sleep(500);
    return await publish(pub, PARAMS.outboxMessages - PARAMS.warmupMessages, {
      publishers: pub.pid,
      aedes: up.b.pid,
    });
  } finally {
    await scope.close();
  }
}

interface DrainResult {
  messages: number;
  arrived: number;
  unique: number;
  duplicates: number;
  /** From the upstream broker letting the agent in to the last arrival at the subscriber. */
  ms: number;
  msgPerSec: number;
  /** From the first to the last arrival (without the reconnect). */
  firstToLastMs: number;
  firstToLastMsgPerSec: number;
  reconnectMs: number;
  outboxEmptyMs: number | undefined;
  timedOut: boolean;
  cpu: CpuSplit;
  window: Window;
}

interface IngestAndDrain {
  ingest: PublishResult;
  ingestPeakRssMB: number;
  outboxBeforeDrain: number | undefined;
  drain: DrainResult;
  drainPeakRssMB: number;
  hwmMB: number | undefined;
  atPeak: Record<string, number> | undefined;
  profileFile?: string;
  logLevels: Record<string, number>;
}

/** (2) and (3) on one agent: ingest with the upstream down fills the outbox, then the upstream comes up. */
async function agentIngestAndDrain(profileDir?: string): Promise<IngestAndDrain> {
  const scope = new Scope();
  try {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const agent = await startAgent(scope, url, profileArgs(profileDir));
    const pub = await startPublishers(scope, agent.brokerUrl);
    const rss = new RssSampler(agent.pid, PARAMS.rssSampleEveryMs).start();
    const breakdown = agent.watchMemory();
    await publish(pub, PARAMS.warmupMessages);
    await sleep(500);
    const ingest = await publish(pub, PARAMS.outboxMessages - PARAMS.warmupMessages, {
      publishers: pub.pid,
      agent: agent.pid,
    });
    const ingestRss = rss.stop();
    const ingestPeak = ingestRss.peakRssMB;
    await pub.stop();
    const outboxBeforeDrain = await agent.metric('leafbridge_outbox_messages');
    const expected = outboxBeforeDrain ?? PARAMS.outboxMessages;

    // (3) the upstream broker comes up on the URL's port; our subscriber gets in before the agent does.
    const up = await startBroker(scope, port, 'leafbridge-');
    const sub = await startSubscriber(scope, up.url, 'leafbridge/+/devices/#');
    await sub.request({ cmd: 'expect', n: expected, maxMs: 60_000 }, 'expecting', 5_000);
    const reached = sub.next('reached', 65_000);
    const drainRss = new RssSampler(agent.pid, PARAMS.rssSampleEveryMs).start();
    const cpu = new CpuMeter({ agent: agent.pid, upstream: up.b.pid, subscriber: sub.pid });
    const fromUs = monotonicMicros();
    const opened = await up.b.request({ cmd: 'open' }, 'opened', 5_000);
    const openedAt = opened.at as number;
    let outboxEmptyAt: number | undefined;
    const emptyWatch = (async () => {
      const v = await agent.waitForMetric(
        'leafbridge_outbox_messages',
        (n) => n === 0,
        65_000,
        PARAMS.metricsPollMs,
      );
      if (v !== undefined) outboxEmptyAt = now();
    })();
    const r = await reached;
    const toUs = monotonicMicros();
    const split = cpu.stop();
    await emptyWatch;
    const drainRssResult = drainRss.stop();
    const drainPeak = drainRssResult.peakRssMB;
    const atPeak = {
      ...(await breakdown()),
      ...procSplit(drainPeak >= ingestPeak ? drainRssResult.atPeak : ingestRss.atPeak),
    };
    const hwm = readMemory(agent.pid)?.hwmMB;
    await agent.stop();
    const unique = r.unique as number;
    const ms = (r.lastAt as number) - openedAt;
    const firstToLast = (r.lastAt as number) - (r.firstAt as number);
    return {
      ingest,
      ingestPeakRssMB: ingestPeak,
      outboxBeforeDrain,
      drain: {
        messages: expected,
        arrived: r.count as number,
        unique,
        duplicates: r.duplicates as number,
        ms: round1(ms),
        msgPerSec: Math.round(unique / (ms / 1000)),
        firstToLastMs: round1(firstToLast),
        firstToLastMsgPerSec: Math.round(unique / (firstToLast / 1000)),
        reconnectMs: round1((r.firstAt as number) - openedAt),
        outboxEmptyMs: outboxEmptyAt === undefined ? undefined : round1(outboxEmptyAt - openedAt),
        timedOut: r.timedOut as boolean,
        cpu: split,
        window: { fromUs, toUs },
      },
      drainPeakRssMB: drainPeak,
      hwmMB: hwm,
      atPeak,
      ...(profileDir ? { profileFile: newestProfile(profileDir) } : {}),
      logLevels: agent.levels,
    };
  } finally {
    await scope.close();
  }
}

/** The /proc split of the largest RSS sample, next to the /metrics heap figures. */
function procSplit(m: MemoryReading | undefined): Record<string, number> {
  return m ? { procRss: m.rssMB, rssAnon: m.anonMB, rssFile: m.fileMB, rssShmem: m.shmemMB } : {};
}

/** `node --cpu-prof` for the agent process (Node 20 does not take --cpu-prof from NODE_OPTIONS). */
function profileArgs(dir: string | undefined): string[] {
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

function newestProfile(dir: string): string | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  return files.length > 0 ? join(dir, files.sort().at(-1) as string) : undefined;
}

// ---------------------------------------------------------------------------------------------- the bench

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? round3(a / b) : undefined;
}

function maxOf(values: (number | undefined)[]): number | undefined {
  const v = values.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return v.length > 0 ? Math.max(...v) : undefined;
}

/** Runs the sync bench, prints the table, writes the results; resolves true when every target passed. */
export async function runSync(options: BenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const t0 = Date.now();
  const machine = machineInfo();
  const errors: Record<string, string> = {};
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const attempt = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      errors[name] = err instanceof Error ? err.message : String(err);
      log(`  ${name} failed: ${errors[name]}`);
      return undefined;
    }
  };
  log(
    `sync bench: ${machine.cpus} cpus (${machine.cpuModel}), node ${machine.node}, ` +
      `load ${machine.loadavg.join(' ')}, ${options.reps} reps`,
  );

  const directRuns: (DeliveryResult | undefined)[] = [];
  const agentRuns: (AgentThroughput | undefined)[] = [];
  const plainRuns: (PublishResult | undefined)[] = [];
  const durableRuns: (IngestAndDrain | undefined)[] = [];
  for (let rep = 1; rep <= options.reps; rep++) {
    log(`  (1) rep ${rep}: publishers → upstream aedes → subscriber, then publishers → agent → upstream …`);
    directRuns.push(await attempt(`throughput-direct-${rep}`, directThroughput));
    agentRuns.push(await attempt(`throughput-agent-${rep}`, () => agentThroughput()));
  }
  for (let rep = 1; rep <= options.reps; rep++) {
    log(`  (2)+(3) rep ${rep}: plain aedes ingest, then agent ingest with the upstream down and its drain …`);
    plainRuns.push(await attempt(`ingest-plain-${rep}`, plainIngest));
    durableRuns.push(await attempt(`ingest-drain-agent-${rep}`, () => agentIngestAndDrain()));
  }

  // The median run of each side, for the details printed beside the medians.
  const direct = medianRun(directRuns, (r) => r.msgPerSec);
  const viaAgent = medianRun(agentRuns, (r) => r.run.msgPerSec);
  const plain = medianRun(plainRuns, (r) => r.msgPerSec);
  const ingest = medianRun(durableRuns, (r) => r.ingest.msgPerSec);
  const drain = medianRun(durableRuns, (r) => r.drain.msgPerSec);
  const directRate = overRepsOf(directRuns, (r) => r.msgPerSec);
  const agentRate = overRepsOf(agentRuns, (r) => r.run.msgPerSec);
  const plainRate = overRepsOf(plainRuns, (r) => r.msgPerSec);
  const ingestRate = overRepsOf(durableRuns, (r) => r.ingest.msgPerSec);
  const drainRate = overRepsOf(durableRuns, (r) => r.drain.msgPerSec);
  const drainFirstToLast = overRepsOf(durableRuns, (r) => r.drain.firstToLastMsgPerSec);
  const pairRatios = (a: (number | undefined)[], b: (number | undefined)[]) =>
    overReps(a.map((x, i) => ratio(x, b[i])));
  const throughputRatios = pairRatios(
    agentRuns.map((r) => r?.run.msgPerSec),
    directRuns.map((r) => r?.msgPerSec),
  );
  const ingestRatios = pairRatios(
    durableRuns.map((r) => r?.ingest.msgPerSec),
    plainRuns.map((r) => r?.msgPerSec),
  );
  const throughputRatio = throughputRatios.median;
  const ingestRatio = ingestRatios.median;
  const idleRss = maxOf(agentRuns.map((r) => r?.idle?.rssMB));
  const peakThroughput = maxOf(agentRuns.map((r) => r?.load.peakRssMB));
  const peakIngest = maxOf(durableRuns.map((r) => r?.ingestPeakRssMB));
  const peakDrain = maxOf(durableRuns.map((r) => r?.drainPeakRssMB));
  const rssUnderLoad = maxOf([peakThroughput, peakIngest, peakDrain]);
  const targets: Target[] = [
    target(
      'throughput',
      '(1) leaf→upstream QoS 1 throughput, agent / direct (median of the per-pair ratios)',
      throughputRatio,
      '>=',
      TARGETS.throughputRatio,
      'ratio',
    ),
    target(
      'ingest',
      '(2) durable ingest, upstream down, agent / plain aedes (median of the per-pair ratios)',
      ingestRatio,
      '>=',
      TARGETS.ingestRatio,
      'ratio',
    ),
    target(
      'drain',
      `(3) drain of ${drain?.drain.messages ?? PARAMS.outboxMessages} messages from the upstream coming up (median)`,
      drainRate.median,
      '>=',
      TARGETS.drainMsgPerSec,
      'msg/s',
    ),
    target(
      'rss',
      '(4) agent peak RSS under load ((1), (2), (3))',
      rssUnderLoad,
      '<=',
      TARGETS.rssUnderLoadMB,
      'MB',
    ),
  ];
  const passOf = (id: string) => (targets.find((t) => t.id === id)?.pass ? 'PASS' : 'FAIL');

  // Profile the agent when a rate target was missed (in separate runs: the profiler slows it down).
  const missed = new Set(targets.filter((t) => !t.pass).map((t) => t.id));
  const profiles: Record<string, ProfileSummary | string> = {};
  const wantProfile = (id: string) =>
    options.profile === 'always' || (options.profile === 'auto' && missed.has(id));
  if (wantProfile('throughput')) {
    log('  profiling the agent during (1) …');
    const dir = tempDir('lb-bench-prof-');
    const p = await attempt('profile-throughput', () => agentThroughput(dir.path));
    if (p?.profileFile) profiles.throughput = summarizeProfile(p.profileFile, p.run.window);
    else profiles.throughput = 'no profile written';
    if (p) profiles.throughputRunUnderProfiler = `${p.run.msgPerSec} msg/s`;
  }
  if (wantProfile('ingest') || wantProfile('drain')) {
    log('  profiling the agent during (2) and (3) …');
    const dir = tempDir('lb-bench-prof-');
    const p = await attempt('profile-ingest-drain', () => agentIngestAndDrain(dir.path));
    if (p?.profileFile) {
      profiles.ingest = summarizeProfile(p.profileFile, p.ingest.window);
      profiles.drain = summarizeProfile(p.profileFile, p.drain.window);
    } else profiles.ingest = 'no profile written';
    if (p) {
      profiles.ingestRunUnderProfiler = `${p.ingest.msgPerSec} msg/s`;
      profiles.drainRunUnderProfiler = `${p.drain.msgPerSec} msg/s`;
    }
  }

  const rows: Row[] = [
    {
      measure: '(1) QoS 1 throughput leaf→upstream, msg/s (peer: direct to upstream)',
      leafbridge: repText(agentRate),
      peer: repText(directRate),
      ratio: repText(throughputRatios, 2),
      target: `≥ ${TARGETS.throughputRatio}`,
      result: passOf('throughput'),
    },
    {
      measure: '(2) durable ingest, upstream down, msg/s (peer: plain aedes)',
      leafbridge: repText(ingestRate),
      peer: repText(plainRate),
      ratio: repText(ingestRatios, 2),
      target: `≥ ${TARGETS.ingestRatio}`,
      result: passOf('ingest'),
    },
    {
      measure: `(3) drain ${fmt(drain?.drain.messages)} msgs from upstream up, msg/s`,
      leafbridge: repText(drainRate),
      peer: '',
      ratio: '',
      target: `≥ ${fmt(TARGETS.drainMsgPerSec)}`,
      result: passOf('drain'),
    },
    {
      measure: '    drain, first → last arrival, msg/s',
      leafbridge: repText(drainFirstToLast),
      peer: '',
      ratio: '',
      target: '',
      result: '',
    },
    {
      measure: '(4) agent RSS idle, MB',
      leafbridge: fmt(idleRss, 1),
      peer: '',
      ratio: '',
      target: '',
      result: '',
    },
    {
      measure: '(4) agent RSS peak under load, MB (during (1) / (2) / (3))',
      leafbridge: fmt(rssUnderLoad, 1),
      peer: `${fmt(peakThroughput, 1)} / ${fmt(peakIngest, 1)} / ${fmt(peakDrain, 1)}`,
      ratio: '',
      target: `≤ ${TARGETS.rssUnderLoadMB}`,
      result: passOf('rss'),
    },
  ];
  log('  (5) the agent beside a mosquitto bridge on the edge node, fast publishers and 3,000 slow sensors …');
  const edge = await measureEdges(options, log);
  targets.push(...edge.targets);
  for (const [k, v] of Object.entries(edge.errors)) errors[`edge-${k}`] = v;
  for (const [k, v] of Object.entries(edge.profiles)) profiles[`edge-${k}`] = v;
  const text = `${table(rows)}\n\n(5) beside a mosquitto bridge (upstream: mosquitto; edge CPU from /proc, peak RSS = VmHWM)\n${edge.text}`;
  log('');
  log(text);
  const rates = (runs: (number | undefined)[]) => runs.map((r) => fmt(r)).join(' / ');
  const notes: string[] = [
    `runs (msg/s): (1) direct ${rates(directRuns.map((r) => r?.msgPerSec))}; agent ${rates(agentRuns.map((r) => r?.run.msgPerSec))}. ` +
      `(2) plain ${rates(plainRuns.map((r) => r?.msgPerSec))}; agent ${rates(durableRuns.map((r) => r?.ingest.msgPerSec))}. ` +
      `(3) ${rates(durableRuns.map((r) => r?.drain.msgPerSec))}`,
  ];
  if (viaAgent)
    notes.push(
      `(1) agent: ${fmt(viaAgent.run.unique)} unique of ${fmt(viaAgent.run.messages)} arrived in ${fmt(viaAgent.run.ms)} ms, ` +
        `${viaAgent.run.duplicates} duplicates, ${viaAgent.run.errors} publish errors; the publishers saw PUBACKs at ` +
        `${fmt(viaAgent.run.ackedPerSec)} msg/s; ${cpuLine(viaAgent.run.cpu)}`,
    );
  if (direct)
    notes.push(
      `(1) direct: ${fmt(direct.unique)} of ${fmt(direct.messages)} arrived in ${fmt(direct.ms)} ms; ${cpuLine(direct.cpu)}`,
    );
  if (ingest)
    notes.push(
      `(2) agent: ${fmt(ingest.ingest.acked)} PUBACKed in ${fmt(ingest.ingest.ms)} ms, ${ingest.ingest.errors} errors; ` +
        `${cpuLine(ingest.ingest.cpu)}`,
    );
  if (plain)
    notes.push(`(2) plain aedes: ${fmt(plain.acked)} PUBACKed in ${fmt(plain.ms)} ms; ${cpuLine(plain.cpu)}`);
  if (drain)
    notes.push(
      `(3) outbox ${fmt(drain.outboxBeforeDrain)} before; agent reconnected ${fmt(drain.drain.reconnectMs)} ms after the ` +
        `upstream came up; last arrival at ${fmt(drain.drain.ms)} ms; /metrics outbox 0 at ${fmt(drain.drain.outboxEmptyMs)} ms; ` +
        `${drain.drain.duplicates} duplicates; ${cpuLine(drain.drain.cpu)}`,
    );
  const others = [
    ...directRuns.map((r) => r?.cpu),
    ...agentRuns.map((r) => r?.run.cpu),
    ...plainRuns.map((r) => r?.cpu),
    ...durableRuns.flatMap((r) => [r?.ingest.cpu, r?.drain.cpu]),
  ]
    .filter((c): c is CpuSplit => c !== undefined)
    .map((c) => c.otherProcessesCores);
  const noise = others.length > 0 ? round3(others.reduce((a, b) => a + b, 0) / others.length) : undefined;
  notes.push(
    `other work on the machine during the measured runs: ${fmt(noise, 2)} cores on average (max ${fmt(maxOf(others), 2)}) ` +
      `of ${machine.cpus}; runs under load are slower: each figure is the median of ${options.reps} with its ` +
      'min–max; the details above are of the median run',
  );
  const peakRun = agentRuns.reduce<AgentThroughput | undefined>(
    (top, r) => (r && (!top || r.load.peakRssMB > top.load.peakRssMB) ? r : top),
    undefined,
  );
  if (peakRun?.load.atPeak)
    notes.push(
      `(4) agent memory at its RSS peak in (1), MB: ${Object.entries(peakRun.load.atPeak)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  const peakDurable = durableRuns.reduce<IngestAndDrain | undefined>(
    (top, r) => (r && (!top || r.drainPeakRssMB > top.drainPeakRssMB) ? r : top),
    undefined,
  );
  if (peakDurable?.atPeak)
    notes.push(
      `(4) agent memory at its RSS peak in (2)/(3), MB: ${Object.entries(peakDurable.atPeak)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  notes.push(...edge.notes.map((n) => `(5) ${n}`));
  printTail(log, notes, profiles, errors);

  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const files = writeResults('sync', startedAt, {
    machine: {
      ...machine,
      loadavgAtEnd: machineInfo().loadavg,
      otherProcessesCoresDuringRuns: { mean: noise, max: maxOf(others) },
    },
    options,
    params: { ...PARAMS, agentNodeArgs: EXTRA_AGENT_ARGS },
    targets,
    pass,
    results: {
      throughput: {
        unit:
          'msg/s (unique arrivals at the upstream subscriber / (last arrival − first publish)); agent and direct: ' +
          'the median run; rates and ratio over the reps (median, min, max, reps)',
        agent: strip(viaAgent?.run),
        direct: strip(direct),
        agentRate,
        directRate,
        ratio: throughputRatios,
        outboxDrainedAfterRun: viaAgent?.outboxDrainedAfterRun,
        runs: {
          agent: agentRuns.map((r) => strip(r?.run)),
          direct: directRuns.map((r) => strip(r)),
        },
      },
      ingest: {
        unit:
          'msg/s (PUBACKs at the publishers / (last PUBACK − first publish)); agent and plainAedes: the median ' +
          'run; rates and ratio over the reps',
        agent: strip(ingest?.ingest),
        plainAedes: strip(plain),
        agentRate: ingestRate,
        plainAedesRate: plainRate,
        ratio: ingestRatios,
        runs: { agent: durableRuns.map((r) => strip(r?.ingest)), plainAedes: plainRuns.map((r) => strip(r)) },
      },
      drain: {
        unit: 'msg/s (unique arrivals / (last arrival − upstream broker up)); median: the median run',
        rate: drainRate,
        median: drain ? { ...strip(drain.drain), outboxBeforeDrain: drain.outboxBeforeDrain } : undefined,
        runs: durableRuns.map((r) => strip(r?.drain)),
      },
      memory: {
        unit: 'MB (VmRSS / VmHWM of the agent process; breakdown from its /metrics at the largest RSS seen)',
        idle: agentRuns.map((r) => r?.idle),
        peakRssDuringThroughput: agentRuns.map((r) => r?.load.peakRssMB),
        hwmAfterThroughput: agentRuns.map((r) => r?.load.hwmMB),
        breakdownDuringThroughput: agentRuns.map((r) => r?.load.atPeak),
        peakRssDuringIngest: durableRuns.map((r) => r?.ingestPeakRssMB),
        peakRssDuringDrain: durableRuns.map((r) => r?.drainPeakRssMB),
        hwmAfterDrain: durableRuns.map((r) => r?.hwmMB),
        breakdownDuringIngestAndDrain: durableRuns.map((r) => r?.atPeak),
      },
      edge: edge.results,
      agentLogLevels: {
        throughput: agentRuns.map((r) => r?.logLevels),
        ingestDrain: durableRuns.map((r) => r?.logLevels),
      },
    },
    table: text.split('\n'),
    notes,
    ...(Object.keys(profiles).length > 0 ? { profile: profiles } : {}),
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  });
  log(
    `\n  ${pass ? 'all targets met' : 'TARGETS MISSED'}; ${round1((Date.now() - t0) / 1000)} s; wrote ${files.join(', ')}`,
  );
  return pass;
}
