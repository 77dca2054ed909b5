import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ControlPlane } from '../helpers/controlPlane.js';
import { ROOT } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until } from '../helpers/wait.js';

/**
 * External (Akri) handlers in a cluster install: the real API server refuses a DiscoveryConfig naming one
 * until the install is generated with `leafbridge manifests --external-handlers`, then keeps its free-form
 * details whole; the agent's config names the handler and its DaemonSet mounts the registration directory.
 */

/** The built CLI's `leafbridge manifests ARGS` (vitest's globalSetup built it). */
function manifests(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(ROOT, 'bin/leafbridge.js'), 'manifests', ...args],
      { timeout: 30_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)),
    );
  });
}

const details = { subnet: '10.0.0.0/24', scan: { ports: [502, 1502], slow: true } };
const config = (name: string, handler: string, d: unknown = details) =>
  stringify({
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name, namespace: 'leafbridge' },
    spec: { handler: { name: handler, details: d } },
  });

let cp: ControlPlane | undefined;

describeControlPlane('external handlers in the install, on the real API server', () => {
  beforeAll(async () => {
    cp = await ControlPlane.start();
  }, 120_000);
  afterAll(async () => {
    await cp?.close();
    cp = undefined;
  });

  it('a DiscoveryConfig naming an external handler: refused without --external-handlers, accepted with it', async () => {
    const kubectl = cp!.kubectl.bind(cp);
    await kubectl(['apply', '-f', '-'], await manifests([]));
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/discoveryconfigs.leafbridge.io',
    ]);
    // Refused for its name; its details, which no built-in handler has, are refused too (kubectl is strict).
    await expect(kubectl(['create', '-f', '-'], config('sensors', 'my-sensors', {}))).rejects.toThrow(
      /spec\.handler\.name: Unsupported value: "my-sensors"/,
    );
    await expect(kubectl(['create', '-f', '-'], config('sensors', 'my-sensors'))).rejects.toThrow(
      /unknown field "spec\.handler\.details\.scan"/,
    );

    const out = await kubectl(['apply', '-f', '-'], await manifests(['--external-handlers', 'my-sensors']));
    expect(out).toMatch(
      /customresourcedefinition\.apiextensions\.k8s\.io\/discoveryconfigs\.leafbridge\.io configured/,
    );
    // The API server serves a changed CRD schema a moment after the update.
    await until(
      async () =>
        kubectl(['create', '-f', '-'], config('sensors', 'my-sensors')).then(
          () => true,
          () => false,
        ),
      30_000,
      'the DiscoveryConfig naming my-sensors to be accepted',
    );
    const stored = JSON.parse(
      await kubectl(['-n', 'leafbridge', 'get', 'discoveryconfig', 'sensors', '-o', 'json']),
    ) as { spec: { handler: { name: string; details: unknown } } };
    expect(stored.spec.handler).toEqual({ name: 'my-sensors', details });
    // The built-in handlers are still checked: onvif's details are not free-form.
    await expect(kubectl(['create', '-f', '-'], config('cams', 'onvif'))).rejects.toThrow(
      /spec\.handler\.details/,
    );

    const daemonSet = JSON.parse(
      await kubectl(['-n', 'leafbridge', 'get', 'daemonset', 'leafbridge-agent', '-o', 'json']),
    ) as { spec: { template: { spec: { volumes: { name: string; hostPath?: { path: string } }[] } } } };
    expect(daemonSet.spec.template.spec.volumes).toContainEqual({
      name: 'external-handlers',
      hostPath: { path: '/var/lib/akri', type: 'DirectoryOrCreate' },
    });
    const agentConfig = await kubectl([
      ...['-n', 'leafbridge', 'get', 'configmap', 'leafbridge-agent'],
      ...['-o', 'jsonpath={.data.config\\.yaml}'],
    ]);
    expect(agentConfig).toMatch(/external:\n\s+handlers:\n\s+- my-sensors\n\s+dir: \/var\/lib\/akri/);
  }, 120_000);
});
