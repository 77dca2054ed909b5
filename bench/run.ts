// `npm run bench -- [NAME] [--profile | --no-profile] [--reps=N] [--outage-s N] [--steady-s N]
// [--api real|double|both]`: runs one benchmark, or all of them without a NAME.
// Exit status: 0 every target met, 1 a target missed or a run failed, 2 usage.

import { runDevicePlugin } from './deviceplugin.js';
import { runDiscovery } from './discovery.js';
import { runEdge } from './edge.js';
import { type HubBenchOptions, runHub } from './hub.js';
import type { BenchOptions } from './lib/options.js';
import type { ApiChoice } from './lib/realApi.js';
import { type RegistryBenchOptions, runRegistry } from './registry.js';
import { runSync } from './sync.js';

type Bench = (options: BenchOptions) => Promise<boolean>;

/** Known benchmarks, in the order `npm run bench` runs them. */
const BENCHES: Record<string, Bench> = {
  sync: runSync,
  edge: runEdge,
  discovery: runDiscovery,
  deviceplugin: runDevicePlugin,
  registry: runRegistry,
  hub: runHub,
};

const USAGE = `usage: npm run bench -- [${Object.keys(BENCHES).join('|')}] [--profile | --no-profile] [--reps=N]

  without a name every benchmark runs; results go to bench/results/<name>-<time>.json and <name>-latest.json
  --profile      always CPU-profile the agent (default: only when a target is missed)
  --no-profile   never profile
  --reps=N       runs of each measured phase (pairs interleaved); figures are the median with the
                 min–max spread, targets judged on the median (default 3)
  edge           the agent beside a mosquitto bridge on the edge node (also run by sync): fast publishers and 3,000
                 slow sensors; LEAFBRIDGE_BENCH_AGENT_NODE_ARGS adds Node flags to the agent
  --outage-s N   registry: how long the API server stays down in each rep (default 60: every backoff of the
                 store is at its ceiling by then; 600 for ten minutes; the real server's is capped at 60)
  --steady-s N   hub: how long each load step's steady window lasts (default 20)
  --api real|double|both
                 hub, registry: which Kubernetes API server to run against: the real control plane (etcd +
                 kube-apiserver, binaries from scripts/build-control-plane.sh), the test double, or both side by
                 side (default: both when the binaries exist, else the double, saying the real one was skipped)
`;

/** `--outage-s N` becomes `--outage-s=N`, so its value is not taken for a benchmark's name. */
function joinValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if ((a === '--outage-s' || a === '--steady-s' || a === '--api') && i + 1 < argv.length)
      out.push(`${a}=${argv[++i]}`);
    else out.push(a);
  }
  return out;
}

async function main(args: string[]): Promise<number> {
  const argv = joinValues(args);
  const names = argv.filter((a) => !a.startsWith('-'));
  const flags = argv.filter((a) => a.startsWith('-'));
  const options: RegistryBenchOptions & HubBenchOptions = { profile: 'auto', reps: 3 };
  for (const f of flags) {
    const reps = /^--reps=(\d+)$/.exec(f);
    const outage = /^--outage-s=(\d+(?:\.\d+)?)$/.exec(f);
    const steady = /^--steady-s=(\d+(?:\.\d+)?)$/.exec(f);
    const api = /^--api=(real|double|both)$/.exec(f);
    if (reps && Number(reps[1]) >= 1) options.reps = Number(reps[1]);
    else if (outage && Number(outage[1]) > 0) options.outageS = Number(outage[1]);
    else if (steady && Number(steady[1]) > 0) options.steadyS = Number(steady[1]);
    else if (api) options.api = api[1] as ApiChoice;
    else if (f === '--profile') options.profile = 'always';
    else if (f === '--no-profile') options.profile = 'never';
    else if (f === '--help' || f === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else {
      process.stderr.write(`bench: unknown option ${f}\n${USAGE}`);
      return 2;
    }
  }
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length > 0 || names.length > 1) {
    process.stderr.write(
      `${unknown.length > 0 ? `bench: unknown benchmark ${unknown.join(', ')}\n` : ''}${USAGE}`,
    );
    return 2;
  }
  const selected = names.length === 1 ? names : Object.keys(BENCHES);
  let ok = true;
  for (const name of selected) {
    const bench = BENCHES[name] as Bench;
    ok = (await bench(options)) && ok;
  }
  return ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
