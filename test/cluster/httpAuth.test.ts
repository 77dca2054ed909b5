import { afterAll, beforeAll, expect, it } from 'vitest';
import { Agent } from '../../src/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { loadKubeConfig } from '../../src/kubeclient/connection.js';
import { KubeRest } from '../../src/kubeclient/kubeRest.js';
import { readSecretKey } from '../../src/kubeclient/secrets.js';
import { silentLogger } from '../../src/util/logger.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { ControlPlane, INSTALL_NS } from '../helpers/controlPlane.js';
import { tempDir } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';
import { until, within } from '../helpers/wait.js';

/**
 * The agent's HTTP API in a cluster: bearer tokens reviewed by the real kube-apiserver (TokenReview), rights
 * from its RBAC (SubjectAccessReview) on the leafbridge.io resources and /metrics, the answers cached for
 * `http.auth.cacheTtl`. The agent runs as the leafbridge-agent service account that deploy/ binds: the
 * reviews work only if the install grants them.
 */

const NS = INSTALL_NS;
const TTL_S = 3;

/** Service accounts of the test's users and what RBAC gives each (applied with kubectl as the admin). */
const USERS_YAML = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer, namespace: ${NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: editor, namespace: ${NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody, namespace: ${NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: scraper, namespace: ${NS}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leafbridge-viewer, namespace: ${NS}}
rules:
  - {apiGroups: [leafbridge.io], resources: [devices, discoveryconfigs], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewer, namespace: ${NS}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leafbridge-viewer}
subjects: [{kind: ServiceAccount, name: viewer, namespace: ${NS}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leafbridge-editor, namespace: ${NS}}
rules:
  - {apiGroups: [leafbridge.io], resources: [discoveryconfigs], verbs: [get, list, watch, create, update, delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: editor, namespace: ${NS}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leafbridge-editor}
subjects: [{kind: ServiceAccount, name: editor, namespace: ${NS}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: leafbridge-test-metrics-reader}
rules:
  - {nonResourceURLs: [/metrics], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: leafbridge-test-metrics-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: leafbridge-test-metrics-reader}
subjects: [{kind: ServiceAccount, name: scraper, namespace: ${NS}}]
`;

/** apiserver_request_total of the review kinds (created by the agent only: nothing else here asks). */
async function reviewCounts(
  cp: ControlPlane,
): Promise<{ tokenreviews: number; subjectaccessreviews: number }> {
  const res = await cp.request('GET', '/metrics');
  const out = { tokenreviews: 0, subjectaccessreviews: 0 };
  for (const line of String(res.body).split('\n')) {
    if (!line.startsWith('apiserver_request_total{') || !line.includes('verb="POST"')) continue;
    const resource = /resource="(\w+)"/.exec(line)?.[1];
    if (resource === 'tokenreviews' || resource === 'subjectaccessreviews')
      out[resource] += Number(line.slice(line.lastIndexOf('}') + 1).trim());
  }
  return out;
}

describeControlPlane(
  'the agent HTTP API against the real API server: TokenReview and SubjectAccessReview',
  () => {
    const dir = tempDir('lb-cluster-auth-');
    let cp: ControlPlane;
    let agent: Agent;
    let base: string;
    let agentKubeconfig: string;
    const tokens: Record<string, string> = {};

    const call = async (method: string, path: string, token?: string, body?: unknown) => {
      const res = await within(
        fetch(`${base}${path}`, {
          method,
          headers: {
            'content-type': 'application/json',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        }),
        15_000,
        `${method} ${path}`,
      );
      const text = await res.text();
      return { status: res.status, text };
    };

    beforeAll(async () => {
      cp = await ControlPlane.start();
      await cp.installDeploy(['deploy/crds', 'deploy/agent']);
      await cp.kubectl(['apply', '-f', '-'], USERS_YAML);
      for (const name of ['viewer', 'editor', 'nobody', 'scraper']) tokens[name] = await cp.token(name);
      const kubeconfig = await cp.writeKubeconfig(dir.path, { serviceAccount: 'leafbridge-agent' });
      agentKubeconfig = kubeconfig;
      const config = parseConfig(
        agentConfig(`${dir.path}/data`, undefined, {
          kubernetes: kubeconfig,
          http: { listen: '127.0.0.1:0', auth: { cacheTtl: `${TTL_S}s` } },
        }),
      );
      agent = new Agent(config, silentLogger());
      const { http } = await agent.start();
      base = `http://127.0.0.1:${http.port}`;
    }, 180_000);

    afterAll(async () => {
      await agent?.stop();
      await cp?.close();
      dir.remove();
    }, 60_000);

    it('no token: 401; a token the API server does not accept: 401', async () => {
      expect((await call('GET', '/healthz')).status).toBe(200);
      expect((await call('GET', '/api/v1/devices')).status).toBe(401);
      expect((await call('GET', '/metrics')).status).toBe(401);
      expect((await call('POST', '/api/v1/discoveryconfigs', undefined, {})).status).toBe(401);
      expect((await call('GET', '/api/v1/devices', 'not-a-token')).status).toBe(401);
      // A real token whose account was deleted is no longer accepted either.
      await cp.kubectl(['-n', NS, 'create', 'serviceaccount', 'gone']);
      const gone = await cp.token('gone');
      await cp.kubectl(['-n', NS, 'delete', 'serviceaccount', 'gone']);
      await until(async () => (await call('GET', '/api/v1/devices', gone)).status === 401, 15_000, '401');
    });

    it('RBAC decides: viewer reads, nobody is refused (403), scraper reads only /metrics', async () => {
      const viewer = await call('GET', '/api/v1/devices', tokens.viewer);
      expect(viewer.status, viewer.text).toBe(200);
      expect(JSON.parse(viewer.text).kind).toBe('DeviceList');
      expect((await call('GET', '/api/v1/discoveryconfigs', tokens.viewer)).status).toBe(200);
      expect((await call('GET', '/metrics', tokens.viewer)).status).toBe(403);

      const nobody = await call('GET', '/api/v1/devices', tokens.nobody);
      expect(nobody.status).toBe(403);
      expect(JSON.parse(nobody.text).message).toBe(
        `system:serviceaccount:${NS}:nobody may not list devices.leafbridge.io`,
      );
      expect((await call('GET', '/api/v1/events', tokens.nobody)).status).toBe(403);

      expect((await call('GET', '/metrics', tokens.scraper)).status).toBe(200);
      expect((await call('GET', '/api/v1/devices', tokens.scraper)).status).toBe(403);
    });

    it('writes need the write verb: viewer 403; editor passes the check (the agent then says configs live in the cluster, 405)', async () => {
      const config = { name: 'x', spec: { handler: { name: 'debug-echo', details: {} } } };
      expect((await call('POST', '/api/v1/discoveryconfigs', tokens.viewer, config)).status).toBe(403);
      expect((await call('DELETE', '/api/v1/discoveryconfigs/x', tokens.viewer)).status).toBe(403);
      expect((await call('POST', '/api/v1/discoveryconfigs', tokens.editor, config)).status).toBe(405);
      expect((await call('DELETE', '/api/v1/discoveryconfigs/x', tokens.editor)).status).toBe(405);
      // The editor may not read Devices: RBAC on each resource, not one "logged in" switch.
      expect((await call('GET', '/api/v1/devices', tokens.editor)).status).toBe(403);
      const listed = await cp.request(
        'GET',
        `/apis/leafbridge.io/v1alpha1/namespaces/${NS}/discoveryconfigs`,
      );
      expect((listed.body as { items: unknown[] }).items).toEqual([]);
    });

    it(`answers are cached for ${TTL_S} s: one review per token and access, and a revoked right ends after it`, async () => {
      await cp.kubectl(['-n', NS, 'create', 'serviceaccount', 'cached']);
      await cp.kubectl([
        '-n',
        NS,
        'create',
        'rolebinding',
        'cached',
        '--role=leafbridge-viewer',
        `--serviceaccount=${NS}:cached`,
      ]);
      const token = await cp.token('cached');
      const before = await reviewCounts(cp);
      const started = Date.now();
      for (let i = 0; i < 5; i++) expect((await call('GET', '/api/v1/devices', token)).status).toBe(200);
      // Five requests well within one TTL: one TokenReview and one SubjectAccessReview in all.
      expect(Date.now() - started).toBeLessThan(TTL_S * 1000);
      const after = await reviewCounts(cp);
      expect(after.tokenreviews - before.tokenreviews).toBe(1);
      expect(after.subjectaccessreviews - before.subjectaccessreviews).toBe(1);
      await cp.kubectl(['-n', NS, 'delete', 'rolebinding', 'cached']);
      const revoked = Date.now();
      await until(
        async () => (await call('GET', '/api/v1/devices', token)).status === 403,
        15_000,
        'refused',
      );
      expect(Date.now() - revoked).toBeLessThan((TTL_S + 5) * 1000);
    });

    it('the install lets the agent read the Secrets of its namespace that configs name, and no others', async () => {
      await cp.kubectl([
        '-n',
        NS,
        'create',
        'secret',
        'generic',
        'cams',
        '--from-literal=password=from-a-secret',
      ]);
      await cp.kubectl(['create', 'namespace', 'elsewhere']);
      await cp.kubectl([
        '-n',
        'elsewhere',
        'create',
        'secret',
        'generic',
        'cams',
        '--from-literal=password=x',
      ]);
      const { kubeConfig } = await loadKubeConfig(agentKubeconfig);
      const rest = new KubeRest(kubeConfig);
      try {
        expect(await readSecretKey(rest, NS, { name: 'cams', key: 'password' })).toBe('from-a-secret');
        await expect(readSecretKey(rest, NS, { name: 'cams', key: 'nope' })).rejects.toThrow(
          `secret ${NS}/cams has no key nope`,
        );
        await expect(
          readSecretKey(rest, 'elsewhere', { name: 'cams', key: 'password' }),
        ).rejects.toMatchObject({
          status: 403,
        });
      } finally {
        rest.close();
      }
    });
  },
);
