// `npm run bench -- edge` (also part of `npm run bench -- sync`): the agent beside what users would run instead,
// a mosquitto bridge on the edge node (issue 13), in one run against one upstream mosquitto with a counting
// subscriber. Two shapes of load:
//   fast:  20 mqtt.js QoS 1 publishers × 5,000 messages, a window of 100 each, 80-byte payloads
//   slow:  3,000 MQTT 5 sensors, one QoS 1 message a second each for 20 s, spread over 3 client processes
// Edges: the mosquitto bridge (persistence true, max_queued_messages 0, cleansession false, devices/# out 1 under
// leafbridge/<node>/), a plain `leafbridge agent` (no Node flags), the agent with store.synchronous full, and
// direct publishing to the upstream (no edge) for the throughput goal. Runs are interleaved rep by rep.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ProfileSummary, summarizeProfile } from './lib/cpuprofile.js';
import {
  type AgentLaunch,
  type EdgeKind,
  type FastRun,
  type FastShape,
  fastRun,
  type SlowRun,
  type SlowShape,
  slowRun,
} from './lib/edgeRuns.js';
import type { BenchOptions } from './lib/options.js';
import { fmt, grid, printTail, strip, type Target, target, writeResults } from './lib/report.js';
import { overReps, repText } from './lib/stats.js';
import { machineInfo, round1, round3, tempDir } from './lib/util.js';

export const FAST: FastShape = {
  clients: 20,
  messagesPerClient: 5_000,
  window: 100,
  payloadBytes: 80,
  warmupMessages: 10_000,
  maxRunMs: 60_000,
};

export const SLOW: SlowShape = {
  sensors: 3_000,
  processes: 3,
  seconds: 20,
  payloadBytes: 80,
  connectConcurrency: 50,
};

/** The agent as a user starts it: `leafbridge agent`, no Node flags; LEAFBRIDGE_BENCH_AGENT_NODE_ARGS adds some. */
const AGENT_ARGS = (process.env.LEAFBRIDGE_BENCH_AGENT_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

const LAUNCH: AgentLaunch = {
  nodeArgs: AGENT_ARGS,
  rateLimit: { messagesPerSecond: 1_000_000, burst: 1_000_000 },
  upstreamInflight: 1000,
};

export const EDGE_TARGETS = {
  fastThroughputRatio: 1.0,
  fastCpuRatio: 1.0,
  peakRssMB: 100,
  slowCpuRatio: 1.5,
  directRatioGoal: 0.7,
};

const FAST_EDGES: EdgeKind[] = ['direct', 'mosquitto', 'agent', 'agent-full'];
const SLOW_EDGES: EdgeKind[] = ['mosquitto', 'agent'];

export interface EdgeReport {
  targets: Target[];
  text: string;
  notes: string[];
  results: Record<string, unknown>;
  profiles: Record<string, ProfileSummary | string>;
  errors: Record<string, string>;
}

const median = (v: (number | undefined)[]) => overReps(v).median;

const ratio = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b !== undefined && b > 0 ? round3(a / b) : undefined;

/**
 * Per edge: median throughput (with its spread) and CPU per message, worst peak RSS over the reps (the same rule
 * for every edge).
 */
function summarizeFast(runs: FastRun[], edge: EdgeKind) {
  const mine = runs.filter((r) => r.edge === edge && !r.timedOut);
  const rate = overReps(mine.map((r) => r.msgPerSec));
  return {
    runs: mine.length,
    msgPerSec: rate.median,
    rate,
    cpuUsPerMsg: median(mine.map((r) => r.edgeCpuUsPerMsg)),
    peakRssMB: Math.max(...mine.map((r) => r.edgePeakRssMB ?? Number.NaN).filter(Number.isFinite)),
  };
}

function summarizeSlow(runs: SlowRun[], edge: EdgeKind) {
  const mine = runs.filter((r) => r.edge === edge);
  return {
    runs: mine.length,
    acked: Math.min(...mine.map((r) => r.acked)),
    unique: Math.min(...mine.map((r) => r.unique)),
    cpuS: median(mine.map((r) => r.edgeCpuS)),
    cpuConnectS: median(mine.map((r) => r.edgeCpuConnectS)),
    cpuPublishS: median(mine.map((r) => r.edgeCpuPublishS)),
    kBPerConnection: median(mine.map((r) => r.kBPerConnection)),
    peakRssMB: Math.max(...mine.map((r) => r.edgePeakRssMB)),
  };
}

/** The agent's profile: the largest in `dir` (a relaunched agent's thin parent writes a small one of its own). */
function agentProfile(dir: string): string | undefined {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
  return files.sort((a, b) => statSync(b).size - statSync(a).size)[0];
}

/** Runs both shapes against every edge, interleaved; returns the table, targets and results (no file written). */
export async function measureEdges(options: BenchOptions, log: (s: string) => void): Promise<EdgeReport> {
  const errors: Record<string, string> = {};
  const attempt = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      errors[name] = err instanceof Error ? err.message : String(err);
      log(`  ${name} failed: ${errors[name]}`);
      return undefined;
    }
  };
  const fast: FastRun[] = [];
  const slow: SlowRun[] = [];
  for (let rep = 1; rep <= options.reps; rep++) {
    for (const edge of FAST_EDGES) {
      log(`  edge fast rep ${rep}: ${edge} …`);
      const r = await attempt(`fast-${edge}-${rep}`, () => fastRun(edge, FAST, LAUNCH));
      if (r) fast.push(r);
    }
  }
  for (let rep = 1; rep <= options.reps; rep++) {
    for (const edge of SLOW_EDGES) {
      log(`  edge slow rep ${rep}: ${edge}, ${SLOW.sensors} sensors …`);
      const r = await attempt(`slow-${edge}-${rep}`, () => slowRun(edge, SLOW, LAUNCH));
      if (r) slow.push(r);
    }
  }
  const f = Object.fromEntries(FAST_EDGES.map((e) => [e, summarizeFast(fast, e)])) as Record<
    EdgeKind,
    ReturnType<typeof summarizeFast>
  >;
  const s = Object.fromEntries(SLOW_EDGES.map((e) => [e, summarizeSlow(slow, e)])) as Record<
    EdgeKind,
    ReturnType<typeof summarizeSlow>
  >;
  const T = EDGE_TARGETS;
  const ratios = {
    fastThroughput: ratio(f.agent.msgPerSec, f.mosquitto.msgPerSec),
    fastCpu: ratio(f.agent.cpuUsPerMsg, f.mosquitto.cpuUsPerMsg),
    fastRss: ratio(f.agent.peakRssMB, f.mosquitto.peakRssMB),
    fullThroughput: ratio(f['agent-full'].msgPerSec, f.agent.msgPerSec),
    fullCpu: ratio(f['agent-full'].cpuUsPerMsg, f.agent.cpuUsPerMsg),
    agentDirect: ratio(f.agent.msgPerSec, f.direct.msgPerSec),
    mosquittoDirect: ratio(f.mosquitto.msgPerSec, f.direct.msgPerSec),
    slowCpu: ratio(s.agent.cpuS, s.mosquitto.cpuS),
    slowRss: ratio(s.agent.peakRssMB, s.mosquitto.peakRssMB),
  };
  const slowComplete = s.agent.runs > 0 && s.agent.unique >= SLOW.sensors * SLOW.seconds;
  const targets: Target[] = [
    target(
      'edge-fast-throughput',
      'fast: agent / mosquitto bridge, msg/s',
      ratios.fastThroughput,
      '>=',
      T.fastThroughputRatio,
      'ratio',
    ),
    target(
      'edge-fast-cpu',
      'fast: agent / mosquitto bridge, edge CPU per message',
      ratios.fastCpu,
      '<=',
      T.fastCpuRatio,
      'ratio',
    ),
    target('edge-fast-rss', 'fast: agent peak RSS (VmHWM)', f.agent.peakRssMB, '<=', T.peakRssMB, 'MB'),
    target(
      'edge-slow-cpu',
      'slow: agent / mosquitto bridge, edge CPU',
      ratios.slowCpu,
      '<=',
      T.slowCpuRatio,
      'ratio',
    ),
    target(
      'edge-slow-rss',
      'slow: agent peak RSS (VmHWM)',
      slowComplete ? s.agent.peakRssMB : undefined,
      '<=',
      T.peakRssMB,
      'MB',
    ),
  ];
  const pass = (id: string) => (targets.find((t) => t.id === id)?.pass ? 'PASS' : 'FAIL');
  const fastText = grid(
    ['fast: 20 publishers × 5,000, window 100, 80 B, QoS 1', 'msg/s', 'edge CPU µs/msg', 'edge peak RSS MB'],
    [
      ['direct to upstream mosquitto (no edge)', repText(f.direct.rate), '', ''],
      [
        'mosquitto bridge',
        repText(f.mosquitto.rate),
        fmt(f.mosquitto.cpuUsPerMsg, 1),
        fmt(f.mosquitto.peakRssMB, 1),
      ],
      ['leafbridge agent', repText(f.agent.rate), fmt(f.agent.cpuUsPerMsg, 1), fmt(f.agent.peakRssMB, 1)],
      [
        'leafbridge agent, store.synchronous full',
        repText(f['agent-full'].rate),
        fmt(f['agent-full'].cpuUsPerMsg, 1),
        fmt(f['agent-full'].peakRssMB, 1),
      ],
      [
        'agent / mosquitto bridge (target)',
        `${fmt(ratios.fastThroughput, 2)} (≥ ${T.fastThroughputRatio}) ${pass('edge-fast-throughput')}`,
        `${fmt(ratios.fastCpu, 2)} (≤ ${T.fastCpuRatio}) ${pass('edge-fast-cpu')}`,
        `${fmt(ratios.fastRss, 1)}× (≤ ${T.peakRssMB} MB) ${pass('edge-fast-rss')}`,
      ],
      ['agent / direct (long goal ≥ 0.7)', fmt(ratios.agentDirect, 2), '', ''],
      ['synchronous full / normal', fmt(ratios.fullThroughput, 2), fmt(ratios.fullCpu, 2), ''],
    ],
  );
  const slowText = grid(
    [
      `slow: ${fmt(SLOW.sensors)} MQTT 5 sensors × 1 msg/s × ${SLOW.seconds} s, QoS 1`,
      'acked',
      'arrived',
      'edge CPU s (connect + publish)',
      'per connection KB',
      'edge peak RSS MB',
    ],
    [
      [
        'mosquitto bridge',
        fmt(s.mosquitto.acked),
        fmt(s.mosquitto.unique),
        `${fmt(s.mosquitto.cpuS, 2)} (${fmt(s.mosquitto.cpuConnectS, 2)} + ${fmt(s.mosquitto.cpuPublishS, 2)})`,
        fmt(s.mosquitto.kBPerConnection, 1),
        fmt(s.mosquitto.peakRssMB, 1),
      ],
      [
        'leafbridge agent',
        fmt(s.agent.acked),
        fmt(s.agent.unique),
        `${fmt(s.agent.cpuS, 2)} (${fmt(s.agent.cpuConnectS, 2)} + ${fmt(s.agent.cpuPublishS, 2)})`,
        fmt(s.agent.kBPerConnection, 1),
        fmt(s.agent.peakRssMB, 1),
      ],
      [
        'agent / mosquitto bridge (target)',
        '',
        '',
        `${fmt(ratios.slowCpu, 2)} (≤ ${T.slowCpuRatio}) ${pass('edge-slow-cpu')}`,
        '',
        `${fmt(ratios.slowRss, 1)}× (≤ ${T.peakRssMB} MB) ${pass('edge-slow-rss')}`,
      ],
    ],
  );
  const runsOf = (edge: EdgeKind) =>
    fast
      .filter((r) => r.edge === edge)
      .map((r) => `${fmt(r.msgPerSec)} msg/s ${fmt(r.edgeCpuUsPerMsg, 1)} µs ${fmt(r.edgePeakRssMB, 1)} MB`)
      .join(' / ');
  const notes = [
    ...FAST_EDGES.map((e) => `fast runs, ${e}: ${runsOf(e)}`),
    ...SLOW_EDGES.map(
      (e) =>
        `slow runs, ${e}: ${slow
          .filter((r) => r.edge === e)
          .map(
            (r) =>
              `${r.edgeCpuS} s CPU, ${r.edgePeakRssMB} MB, connect ${fmt(r.connectMs)} ms, ${r.errors} errors`,
          )
          .join(' / ')}`,
    ),
    'msg/s: median of the runs (min–max); CPU: median run; peak RSS: largest VmHWM of any run; ratios of the medians. The agent runs as `leafbridge agent` ' +
      `with no Node flags${AGENT_ARGS.length > 0 ? ` (here: ${AGENT_ARGS.join(' ')})` : ''}, its per-client rate limit lifted.`,
  ];
  const profiles: Record<string, ProfileSummary | string> = {};
  const missed = new Set(targets.filter((t) => !t.pass).map((t) => t.id));
  const want = options.profile === 'always' || (options.profile === 'auto' && missed.size > 0);
  if (want) {
    log('  profiling the agent (fast, then slow) …');
    const dir = tempDir('lb-bench-prof-');
    const p = await attempt('profile-fast', () =>
      fastRun('agent', FAST, { ...LAUNCH, profileDir: dir.path }),
    );
    const file = agentProfile(dir.path);
    profiles.fast = p && file ? summarizeProfile(file, p.window) : 'no profile written';
    if (p) profiles.fastRunUnderProfiler = `${fmt(p.msgPerSec)} msg/s`;
    const dir2 = tempDir('lb-bench-prof-');
    const q = await attempt('profile-slow', () =>
      slowRun('agent', SLOW, { ...LAUNCH, profileDir: dir2.path }),
    );
    const file2 = agentProfile(dir2.path);
    profiles.slow = q && file2 ? summarizeProfile(file2, q.window) : 'no profile written';
  }
  return {
    targets,
    text: `${fastText}\n\n${slowText}`,
    notes,
    profiles,
    errors,
    results: {
      params: { fast: FAST, slow: SLOW, agent: LAUNCH, edges: { fast: FAST_EDGES, slow: SLOW_EDGES } },
      fast: f,
      slow: s,
      ratios,
      runs: { fast: fast.map((r) => strip(r)), slow: slow.map((r) => strip(r)) },
    },
  };
}

/** `npm run bench -- edge`: only the comparison with the mosquitto bridge. */
export async function runEdge(options: BenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const machine = machineInfo();
  log(
    `edge bench: ${machine.cpus} cpus, node ${machine.node}, load ${machine.loadavg.join(' ')}, ${options.reps} reps`,
  );
  const r = await measureEdges(options, log);
  log('');
  log(r.text);
  printTail(log, r.notes, r.profiles, r.errors);
  const pass = r.targets.every((t) => t.pass) && Object.keys(r.errors).length === 0;
  const files = writeResults('edge', startedAt, {
    machine: { ...machine, loadavgAtEnd: machineInfo().loadavg },
    options,
    targets: r.targets,
    pass,
    results: r.results,
    table: r.text.split('\n'),
    notes: r.notes,
    ...(Object.keys(r.profiles).length > 0 ? { profile: r.profiles } : {}),
    ...(Object.keys(r.errors).length > 0 ? { errors: r.errors } : {}),
  });
  log(
    `\n  ${pass ? 'all targets met' : 'TARGETS MISSED'}; ${round1((Date.now() - startedAt.getTime()) / 1000)} s; wrote ${files.join(', ')}`,
  );
  return pass;
}
