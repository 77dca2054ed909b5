import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdManifests } from '../../src/install/crds.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { ROOT, tempDir, waitForLine } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/**
 * `leafbridge controller` as a process (the built module, run through its exported command function; the
 * lead wires it into src/cli/main.ts), against the test API server (no real kube-apiserver runs in tests).
 */

const MODULE = join(ROOT, 'dist/src/cli/controllerCommand.js');
const NS = 'default';

let api: KubeApiServer | undefined;
const dirs: { remove(): void }[] = [];

afterEach(async () => {
  await api?.close();
  api = undefined;
  for (const d of dirs.splice(0)) d.remove();
});

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const script = `import { controllerCommand } from ${JSON.stringify(MODULE)};
    process.exitCode = await controllerCommand(process.argv.slice(1));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, LEAFBRIDGE_LOG_LEVEL: 'info', ...env },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stderr: () => stderr };
}

describe('leafbridge controller (the command)', () => {
  it('connects with --kubeconfig, makes brokers, and exits 0 on SIGTERM', async () => {
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
    const dir = tempDir('lb-controller-');
    dirs.push(dir);
    const kubeconfig = api.writeKubeconfig(dir.path, NS);
    api.seed('discoveryconfigs', {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name: 'cams', namespace: NS },
      spec: {
        handler: { name: 'debug-echo', details: { devices: [{ id: 'x' }] } },
        brokerPodSpec: { containers: [{ name: 'broker', image: 'example/broker:1' }] },
      },
    });
    api.seed('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
    api.seed('devices', {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'Device',
      metadata: { name: 'cams-aaaaaa', namespace: NS },
      spec: {
        id: 'x',
        configName: 'cams',
        handler: 'debug-echo',
        shared: true,
        nodes: ['n1'],
        capacity: 1,
        properties: {},
      },
    });
    api.resources.patch(
      api.type('devices'),
      NS,
      'cams-aaaaaa',
      'application/merge-patch+json',
      { status: { online: true, lastSeen: new Date().toISOString() } },
      { subresource: 'status' },
    );

    const p = run([
      '--kubeconfig',
      kubeconfig,
      '-n',
      NS,
      '--pending-timeout',
      '5m',
      '--node-grace',
      '40s',
      '--health-addr',
      '127.0.0.1:0',
      ...['--broker-namespace', 'edge-brokers'],
    ]);
    const port = await waitForLine(p.child, (l) =>
      l.msg === 'health endpoints listening' ? (l.port as number) : undefined,
    );
    // The only candidate: it creates the Lease, leads, and only then reconciles.
    await waitForLine(p.child, (l) => (l.msg === 'became the leader' ? true : undefined), 15_000);
    await waitForLine(p.child, (l) => (l.msg === 'caches synced; reconciling' ? true : undefined), 15_000);
    await until(
      () => api?.object('pods', 'edge-brokers', 'cams-aaaaaa-pod') !== undefined,
      10_000,
      'the broker pod, in the broker namespace',
    );
    expect(api?.object('pods', NS, 'cams-aaaaaa-pod')).toBeUndefined();
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect([ready.status, await ready.json()]).toEqual([200, { role: 'leader', synced: true }]);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);
    const lease = () => api?.object('leases', NS, 'leafbridge-controller')?.spec as Record<string, unknown>;
    expect(lease()).toMatchObject({ leaseDurationSeconds: 15, leaseTransitions: 0 });
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    // Released on the way out: the next candidate need not wait out the 15 s.
    expect(lease()).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
  });

  it('stops and exits 1 when it cannot renew the Lease (API server down), for Kubernetes to start it afresh', async () => {
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
    const dir = tempDir('lb-controller-');
    dirs.push(dir);
    const kubeconfig = api.writeKubeconfig(dir.path, NS);
    const timing = ['--leader-elect-lease-duration', '4s', '--leader-elect-renew-deadline', '3s'];
    const p = run(['--kubeconfig', kubeconfig, '-n', NS, ...timing, '--leader-elect-retry-period', '500ms']);
    await waitForLine(p.child, (l) => (l.msg === 'caches synced; reconciling' ? true : undefined), 15_000);
    await api.down();
    const lost = await waitForLine(p.child, (l) => (l.msg === 'lost the lease' ? l : undefined), 20_000);
    expect(lost.why).toBe('no renewal for 3000 ms');
    expect(await p.exited).toBe(1);
  });

  it('exits 2 on a bad flag, and when there is no cluster to connect to', async () => {
    const bad = run(['--node-grace', 'soon']);
    expect(await bad.exited).toBe(2);
    expect(bad.stderr()).toContain('--node-grace: expected a duration');
    const level = run(['--allow-pod-security', 'root=default/cams']);
    expect(await level.exited).toBe(2);
    expect(level.stderr()).toContain('--allow-pod-security: "root=default/cams": expected baseline=');

    const timing = run(['--leader-elect-renew-deadline', '20s']);
    expect(await timing.exited).toBe(2);
    expect(timing.stderr()).toContain('the lease duration must be longer than the renew deadline');
    const addr = run(['--health-addr', 'everywhere']);
    expect(await addr.exited).toBe(2);
    expect(addr.stderr()).toContain('--health-addr: expected HOST:PORT');

    const none = run([]); // no KUBECONFIG, no service account
    expect(await none.exited).toBe(2);
    expect(none.stderr()).toContain('no cluster');
  });
});
