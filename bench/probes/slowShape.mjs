// One run of the edge bench's slow shape (many sensors, each slow) against one edge, with the CPU split into
// connecting and publishing per connection and per message: for quick comparisons while changing the agent.
// Uses the built bench (npm run build).
//   node bench/probes/slowShape.mjs agent|mosquitto [SENSORS=1500] [SECONDS=10]
// NODE_ARGS='--max-semi-space-size=2 …' starts the agent with those Node flags (and so without its relaunching parent).
import { fileURLToPath } from 'node:url';

const { slowRun } = await import(fileURLToPath(new URL('../../dist/bench/lib/edgeRuns.js', import.meta.url)));
const [kind = 'agent', sensors = '1500', seconds = '10'] = process.argv.slice(2);
const shape = {
  sensors: Number(sensors),
  processes: 3,
  seconds: Number(seconds),
  payloadBytes: 80,
  connectConcurrency: 50,
};
const nodeArgs = (process.env.NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const launch = { nodeArgs, rateLimit: { messagesPerSecond: 1e6, burst: 1e6 }, upstreamInflight: 1000 };
const r = await slowRun(kind, shape, launch);
console.log(
  JSON.stringify({
    edge: kind,
    nodeArgs,
    sensors: shape.sensors,
    messages: r.messages,
    unique: r.unique,
    cpuS: r.edgeCpuS,
    cpuPerConnectUs: Math.round((r.edgeCpuConnectS * 1e6) / shape.sensors),
    cpuPerMessageUs: Math.round((r.edgeCpuPublishS * 1e6) / r.messages),
    rssIdleMB: r.edgeRssIdleMB,
    rssConnectedMB: r.edgeRssConnectedMB,
    kBPerConnection: r.kBPerConnection,
    peakRssMB: r.edgePeakRssMB,
  }),
);
