// What an idle process is made of: preloaded into it (`node -r`), it prints to stderr, N ms after start (default
// 7000; IDLE_MEMORY_MS), its memory (process.memoryUsage), the V8 heap spaces (used / physical, MB) and the number
// of modules loaded; with /proc/<pid>/status (VmRSS, RssAnon, RssFile) that is docs/performance.md's breakdown of
// the idle agent:
//   npm run build
//   node --max-semi-space-size=2 --max-old-space-size=96 -r ./bench/probes/idleMemory.cjs bin/leafbridge.js \
//     agent --config FILE     # e.g. the edge bench's agent config (bench/lib/edgeRuns.ts), kubernetes: off
const v8 = require('node:v8');

const mb = (bytes) => (bytes / 1e6).toFixed(1);
setTimeout(
  () => {
    const m = process.memoryUsage();
    const spaces = v8
      .getHeapSpaceStatistics()
      .filter((s) => s.physical_space_size > 0)
      .map((s) => `${s.space_name} ${mb(s.space_used_size)}/${mb(s.physical_space_size)}`);
    process.stderr.write(
      `idle memory (MB): rss ${mb(m.rss)} heapTotal ${mb(m.heapTotal)} heapUsed ${mb(m.heapUsed)} ` +
        `external ${mb(m.external)} arrayBuffers ${mb(m.arrayBuffers)}\n` +
        `heap spaces used/physical: ${spaces.join(', ')}\nmodules loaded: ${Object.keys(require.cache).length}\n`,
    );
  },
  Number(process.env.IDLE_MEMORY_MS ?? 7000),
).unref();
