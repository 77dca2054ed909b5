// The fifth round's comparison (docs/performance.md): fastCore.mjs's variants, mqttFloor.mjs and slowShape.mjs
// (agent and mosquitto bridge) run one after another, the order rotated each rep, so that a machine loaded by
// other work weighs on all of them alike. Prints one JSON line per run (with the load average at its start),
// then the median and min–max of each figure per edge. Each run is bounded to 300 s.
//   node bench/probes/interleave.mjs [REPS=3] [SENSORS=1500] [SECONDS=10] [LABEL,LABEL...] > runs.jsonl
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const [reps = '3', sensors = '1500', seconds = '10', only] = process.argv.slice(2);
const probe = (name) => fileURLToPath(new URL(name, import.meta.url));
const all = [
  ['fastCore', 'fastCore.mjs', ['core', sensors, seconds, 'slow']],
  ['fastCore batch10', 'fastCore.mjs', ['core', sensors, seconds, 'slow', '10']],
  ['fastCore-nostore', 'fastCore.mjs', ['nostore', sensors, seconds, 'slow']],
  ['fastCore+aedes', 'fastCore.mjs', ['aedes', sensors, seconds, 'slow']],
  ['fastCore burst', 'fastCore.mjs', ['core', sensors, '5', 'burst']],
  ['mqttFloor burst', 'mqttFloor.mjs', [sensors, '5']],
  ['agent', 'slowShape.mjs', ['agent', sensors, seconds]],
  ['mosquitto', 'slowShape.mjs', ['mosquitto', sensors, seconds]],
];
const runs = only ? all.filter(([label]) => only.split(',').includes(label)) : all;
const FIGURES = [
  'cpuPerConnectUs',
  'cpuPerMessageUs',
  'cpuS',
  'kBPerConnection',
  'kBPerConnectionAfterGc',
  'jsKBPerConnection',
  'rssConnectedMB',
  'peakRssMB',
];

const results = new Map(runs.map(([label]) => [label, []]));
for (let rep = 0; rep < Number(reps); rep++) {
  for (let k = 0; k < runs.length; k++) {
    const [label, script, args] = runs[(k + rep) % runs.length];
    const load = loadavg()[0];
    const r = spawnSync(process.execPath, [probe(script), ...args], { encoding: 'utf8', timeout: 300_000 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    let out;
    try {
      out = JSON.parse(line);
    } catch {
      out = { failed: r.status ?? r.signal, stderr: r.stderr.slice(-500) };
    }
    const row = { rep, label, load1: Math.round(load * 10) / 10, ...out };
    results.get(label).push(row);
    console.log(JSON.stringify(row));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
for (const [label, rows] of results) {
  const summary = { summary: label, runs: rows.length };
  for (const f of [...FIGURES, 'load1']) {
    const xs = rows.map((r) => r[f]).filter((x) => typeof x === 'number');
    if (xs.length) summary[f] = `${median(xs)} (${Math.min(...xs)}–${Math.max(...xs)})`;
  }
  console.log(JSON.stringify(summary));
}
