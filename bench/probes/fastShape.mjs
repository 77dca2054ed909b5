// One run of the edge bench's fast shape (20 publishers × 5,000 QoS 1 messages, a window of 100 each, 80-byte
// payloads; FAST in bench/edge.ts) against one edge, for quick comparisons while changing the agent. The edge's
// memory is sampled from /proc every 20 ms, and its split at the highest sample (anonymous memory: heap, malloc,
// stacks; file-backed: the node binary's and libraries' pages) printed beside the kernel's high-water mark.
// Uses the built bench (npm run build).
//   node bench/probes/fastShape.mjs [agent|mosquitto|agent-full]
// NODE_ARGS='--max-semi-space-size=2 …' starts the agent with those Node flags.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = (p) => import(fileURLToPath(new URL(`../../dist/bench/${p}`, import.meta.url)));
const { fastRun } = await dist('lib/edgeRuns.js');
const { FAST } = await dist('edge.js');
const [kind = 'agent'] = process.argv.slice(2);
const nodeArgs = (process.env.NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const launch = { nodeArgs, rateLimit: { messagesPerSecond: 1e6, burst: 1e6 }, upstreamInflight: 1000 };

const read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};
/** The edge process: the agent (node … leafbridge.js agent), or the mosquitto whose config has a `connection`. */
function findEdge() {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const argv = read(`/proc/${pid}/cmdline`).split('\0');
    if (kind.startsWith('agent') && argv.some((a) => a.endsWith('leafbridge.js')) && argv.includes('agent'))
      return pid;
    if (kind === 'mosquitto' && argv[0]?.endsWith('mosquitto') && /^connection /m.test(read(argv[2] ?? '')))
      return pid;
  }
  return undefined;
}

let pid;
let peak = { rssKB: 0, anonKB: 0, fileKB: 0 };
const timer = setInterval(() => {
  pid ??= findEdge();
  const status = pid ? read(`/proc/${pid}/status`) : '';
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  if (kb('VmRSS') > peak.rssKB) peak = { rssKB: kb('VmRSS'), anonKB: kb('RssAnon'), fileKB: kb('RssFile') };
}, 20);
const r = await fastRun(kind, FAST, launch);
clearInterval(timer);
const mb = (kb) => Math.round(kb / 102.4) / 10;
console.log(
  JSON.stringify({
    edge: kind,
    nodeArgs,
    unique: r.unique,
    msgPerSec: r.msgPerSec,
    cpuUsPerMsg: r.edgeCpuUsPerMsg,
    peakRssMB: r.edgePeakRssMB,
    sampledPeak: { rssMB: mb(peak.rssKB), anonMB: mb(peak.anonKB), fileMB: mb(peak.fileKB) },
  }),
);
