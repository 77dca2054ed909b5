import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { agentConfig } from '../helpers/agentConfig.js';
import { until } from '../helpers/mqtt.js';
import { startAgent, stopProcess, tempDir } from '../helpers/processes.js';

/**
 * docs/operations.md: with `kubernetes: auto` the agent uses the cluster when it runs in one (service account)
 * or when $KUBECONFIG is set, and its own store otherwise; it never falls back to ~/.kube/config.
 */
describe('kubernetes: auto', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('never falls back to ~/.kube/config: without a service account or $KUBECONFIG the objects stay local', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    // An API server on port 0 that counts what reaches it, named by a kubeconfig in the agent's home.
    const requests: string[] = [];
    const api = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.writeHead(503).end();
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => api.close(r)));
    const { port } = api.address() as AddressInfo;
    const home = join(dir.path, 'home');
    mkdirSync(join(home, '.kube'), { recursive: true });
    const kubeconfig = join(home, '.kube', 'config');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{name: c, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]`,
        'users: [{name: u, user: {token: t}}]',
        'contexts: [{name: x, context: {cluster: c, user: u, namespace: leafbridge}}]',
        'current-context: x',
        '',
      ].join('\n'),
    );
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
    delete env.KUBECONFIG;
    delete env.KUBERNETES_SERVICE_HOST;
    const config = { ...agentConfig(join(dir.path, 'data'), undefined), kubernetes: 'auto' };

    const local = await startAgent(dir.path, config, { env });
    cleanups.push(() => stopProcess(local.child));
    expect(local.stdout.join('')).toContain('Device and DiscoveryConfig objects are kept in the local store');
    const devices = await fetch(`http://127.0.0.1:${local.http.port}/api/v1/devices`);
    expect(devices.status).toBe(200);
    await stopProcess(local.child);
    expect(requests).toEqual([]);

    // The same file named by $KUBECONFIG is used: the server above is the one that would have been asked.
    const clustered = await startAgent(dir.path, config, { env: { ...env, KUBECONFIG: kubeconfig } });
    cleanups.push(() => stopProcess(clustered.child));
    expect(clustered.stdout.join('')).toContain('objects kept in the cluster');
    await until(() => requests.length > 0, 10_000, 'requests at the API server');
  });
});
