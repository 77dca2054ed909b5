import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { getCommand } from '../../src/cli/getCommand.js';
import { crdManifests } from '../../src/install/crds.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { CLI, tempDir } from '../helpers/processes.js';
import { captureOutput, within } from '../helpers/wait.js';

/**
 * `leafbridge get` reading from a cluster: the real command, in-process, with @kubernetes/client-node
 * against the test API server (the CRDs the agent installs), its output captured.
 */

const API_VERSION = 'leafbridge.io/v1alpha1';
let api: KubeApiServer;
let dir: ReturnType<typeof tempDir>;
let kubeconfig: string;

function device(name: string, namespace: string, labels: Record<string, string> = {}) {
  return {
    apiVersion: API_VERSION,
    kind: 'Device',
    metadata: { name, namespace, labels },
    spec: {
      id: `urn:uuid:${name}`,
      configName: 'cams',
      handler: 'onvif',
      shared: true,
      nodes: ['edge-1', 'edge-2'],
      capacity: 1,
      properties: { ONVIF_IP: '10.0.0.1' },
    },
  };
}

/** Runs the command with stdout and stderr captured (restored afterwards), bounded in time. */
function get(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return captureOutput(() => getCommand(args), 15_000, `leafbridge get ${args.join(' ')}`);
}

const rowsOf = (table: string) => table.trim().split('\n').slice(1);

beforeAll(async () => {
  api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
  dir = tempDir('lb-get-');
  kubeconfig = api.writeKubeconfig(dir.path);
  api.seed('devices', device('cam-a', 'default', { 'leafbridge.io/config': 'cams', tier: 'prod' }));
  api.seed('devices', device('cam-b', 'default', { 'leafbridge.io/config': 'cams', tier: 'test' }));
  api.seed('devices', device('plc-x', 'plant', { 'leafbridge.io/config': 'plcs' }));
  // cam-a gets a status through the status subresource; cam-b and plc-x have none, as fresh objects do.
  const seen = new Date(Date.now() - 5000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  api.resources.update(
    api.type('devices'),
    'default',
    'cam-a',
    {
      ...api.object('devices', 'default', 'cam-a'),
      status: {
        online: true,
        lastSeen: seen,
        conditions: [
          {
            type: 'Reachable',
            status: 'False',
            reason: 'Timeout',
            message: 'no reply',
            lastTransitionTime: seen,
          },
        ],
      },
    },
    { subresource: 'status' },
  );
  api.seed('discoveryconfigs', {
    apiVersion: API_VERSION,
    kind: 'DiscoveryConfig',
    metadata: { name: 'cams', namespace: 'default' },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } }, capacity: 2 },
  });
});
afterAll(async () => {
  await api.close();
  dir.remove();
});

describe('leafbridge get --kubeconfig', () => {
  it('lists devices of the context namespace as a table, absent status printed as <none>', async () => {
    const r = await get('devices', '--kubeconfig', kubeconfig);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(/^NAME\s+CONFIG\s+HANDLER\s+ONLINE\s+NODES\s+AGE\n/);
    const rows = rowsOf(r.out);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatch(/^cam-a\s+cams\s+onvif\s+true\s+edge-1,edge-2\s+\d+s$/);
    expect(rows[1]).toMatch(/^cam-b\s+cams\s+onvif\s+<none>\s+edge-1,edge-2\s+\d+s$/);
  });

  it('-o wide adds id, last seen and the conditions that are not True', async () => {
    const r = await get('devices', '--kubeconfig', kubeconfig, '-o', 'wide');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^NAME\s+CONFIG\s+HANDLER\s+ONLINE\s+NODES\s+AGE\s+ID\s+LAST SEEN\s+CONDITIONS\n/);
    const [a, b] = rowsOf(r.out);
    expect(a).toMatch(/urn:uuid:cam-a\s+\d+s\s+Reachable=Timeout$/);
    expect(b).toMatch(/urn:uuid:cam-b\s+<unknown>\s+<none>$/);
  });

  it('-o json and -o yaml print a DeviceList like kubectl', async () => {
    const json = await get('devices', '--kubeconfig', kubeconfig, '-o', 'json');
    expect(json.code).toBe(0);
    const list = JSON.parse(json.out) as {
      apiVersion: string;
      kind: string;
      items: { metadata: { name: string } }[];
    };
    expect(list).toMatchObject({ apiVersion: API_VERSION, kind: 'DeviceList' });
    expect(list.items.map((d) => d.metadata.name)).toEqual(['cam-a', 'cam-b']);

    const yaml = await get('devices', '--kubeconfig', kubeconfig, '-o', 'yaml');
    expect(yaml.code).toBe(0);
    expect(parse(yaml.out)).toEqual(list);

    const one = await get('devices', 'cam-a', '--kubeconfig', kubeconfig, '-o', 'json');
    expect(JSON.parse(one.out)).toMatchObject({
      kind: 'Device',
      metadata: { name: 'cam-a' },
      status: { online: true },
    });
  });

  it('-l filters on the server', async () => {
    const before = api.requests({ verb: 'list', resource: 'devices' }).length;
    const r = await get('devices', '--kubeconfig', kubeconfig, '-l', 'tier!=prod,leafbridge.io/config=cams');
    expect(r.code).toBe(0);
    expect(rowsOf(r.out).map((row) => row.split(/\s+/)[0])).toEqual(['cam-b']);
    const sent = api.requests({ verb: 'list', resource: 'devices' }).slice(before);
    expect(sent.map((q) => q.query.labelSelector)).toEqual(['tier!=prod,leafbridge.io/config=cams']);

    const none = await get('devices', '--kubeconfig', kubeconfig, '-l', 'tier=nowhere');
    expect(none).toEqual({ code: 0, out: '', err: 'No resources found in default namespace.\n' });
  });

  it('-n picks the namespace; -A lists all of them with a NAMESPACE column', async () => {
    const plant = await get('devices', '--kubeconfig', kubeconfig, '-n', 'plant');
    expect(rowsOf(plant.out)).toHaveLength(1);
    expect(rowsOf(plant.out)[0]).toMatch(/^plc-x\s+cams\s+onvif\s+<none>/);

    const all = await get('devices', '--kubeconfig', kubeconfig, '-A');
    expect(all.code).toBe(0);
    expect(all.out).toMatch(/^NAMESPACE\s+NAME\s+CONFIG\s+HANDLER/);
    expect(rowsOf(all.out).map((row) => row.split(/\s+/).slice(0, 2).join('/'))).toEqual([
      'default/cam-a',
      'default/cam-b',
      'plant/plc-x',
    ]);
    expect(api.requests({ verb: 'list', resource: 'devices' }).at(-1)?.namespace).toBeUndefined();
  });

  it("defaults to the kubeconfig context's namespace; --cluster reads KUBECONFIG", async () => {
    const file = join(dir.path, 'plant.yaml');
    writeFileSync(file, api.kubeconfig('plant'));
    const r = await get('devices', '--kubeconfig', file);
    expect(rowsOf(r.out).map((row) => row.split(/\s+/)[0])).toEqual(['plc-x']);

    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = kubeconfig;
    try {
      const viaEnv = await get('devices', 'cam-b', '--cluster');
      expect(viaEnv.code).toBe(0);
      expect(rowsOf(viaEnv.out)).toHaveLength(1);
    } finally {
      if (saved === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = saved;
    }
  });

  it('lists DiscoveryConfigs; conditions it has not got print as Unknown', async () => {
    const r = await get('configs', '--kubeconfig', kubeconfig);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^NAME\s+HANDLER\s+CAPACITY\s+DEVICES\s+VALID\s+RUNNING\s+AGE\n/);
    expect(rowsOf(r.out)).toEqual([
      expect.stringMatching(/^cams\s+onvif\s+2\s+<none>\s+Unknown\s+Unknown\s+\d+s$/),
    ]);
    const json = await get('configs', '--kubeconfig', kubeconfig, '-o', 'json');
    expect(JSON.parse(json.out)).toMatchObject({
      kind: 'DiscoveryConfigList',
      items: [{ metadata: { name: 'cams' } }],
    });
  });

  it('a missing object is NotFound, exit 1', async () => {
    const r = await get('devices', 'nope', '--kubeconfig', kubeconfig);
    expect(r).toEqual({ code: 1, out: '', err: 'Error from server (NotFound): devices "nope" not found\n' });
    const c = await get('configs', 'nope', '--kubeconfig', kubeconfig, '-o', 'yaml');
    expect(c.err).toBe('Error from server (NotFound): discoveryconfigs "nope" not found\n');
  });

  it('hostile values cannot write control sequences to the terminal', async () => {
    const evil = device('evil', 'hostile');
    evil.spec.id = 'x\u001b[2J\u001b]0;pwned\u0007\ny\u202e';
    api.seed('devices', evil);
    const r = await get('devices', '--kubeconfig', kubeconfig, '-n', 'hostile', '-o', 'wide');
    expect(r.code).toBe(0);
    const controls = [...r.out].filter((ch) => ch !== '\n' && (ch < ' ' || ch === '\u202e'));
    expect(controls).toEqual([]);
    expect(rowsOf(r.out)).toHaveLength(1);
    expect(r.out).toContain('x\\u001b[2J');
  });

  it('pages through long lists (limit and continue) as kubectl does', async () => {
    for (let i = 0; i < 501; i++) api.seed('devices', device(`d-${String(i).padStart(3, '0')}`, 'many'));
    const before = api.requests({ verb: 'list', namespace: 'many' }).length;
    const r = await get('devices', '--kubeconfig', kubeconfig, '-n', 'many', '-o', 'json');
    expect(r.code).toBe(0);
    const items = (JSON.parse(r.out) as { items: { metadata: { name: string } }[] }).items;
    expect(items).toHaveLength(501);
    expect(new Set(items.map((d) => d.metadata.name)).size).toBe(501);
    const pages = api.requests({ verb: 'list', namespace: 'many' }).slice(before);
    expect(pages.map((q) => [q.query.limit, q.query.continue !== undefined])).toEqual([
      ['500', false],
      ['500', true],
    ]);
  });

  it('a server slower than --request-timeout is one line on stderr, exit 1', async () => {
    api.slow(3000);
    try {
      const started = Date.now();
      const r = await get('devices', '--kubeconfig', kubeconfig, '--request-timeout', '200ms');
      expect(Date.now() - started).toBeLessThan(2500);
      expect(r.code).toBe(1);
      expect(r.err).toBe(
        `error: cannot reach the Kubernetes API server at ${api.url}: no answer within 200 ms (--request-timeout)\n`,
      );
    } finally {
      api.slow(0);
    }
  });

  it('refuses bad arguments with the usage, exit 2; --help prints it, exit 0', async () => {
    const bad = await get('devices', 'cam-a', '-A', '--kubeconfig', kubeconfig);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('cannot be retrieved by name across all namespaces');
    expect((await get('gizmos', '--kubeconfig', kubeconfig)).code).toBe(2);
    expect((await get('devices', '--server', 'http://127.0.0.1:1', '--cluster')).code).toBe(2);
    const help = await get('--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--kubeconfig FILE/);
    expect(help.out).toMatch(/-A, --all-namespaces/);
  });

  it('a kubeconfig that cannot be read is one line on stderr, exit 1', async () => {
    const r = await get('devices', '--kubeconfig', join(dir.path, 'missing.yaml'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: cannot load .*missing\.yaml: .+\n$/);
  });
});

describe('an unreachable cluster', () => {
  let down: KubeApiServer;
  let file: string;
  beforeEach(async () => {
    down = await KubeApiServer.start({ crds: crdManifests(builtinHandlers) });
    file = join(dir.path, 'down.yaml');
    writeFileSync(file, down.kubeconfig());
    await down.down();
  });
  afterEach(async () => {
    await down.close();
  });

  it('is one clear line on stderr, exit 1', async () => {
    const r = await get('devices', '--kubeconfig', file);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(
      new RegExp(`^error: cannot reach the Kubernetes API server at ${down.url}: ECONNREFUSED\\n$`),
    );
  });
});

describe('the cost of the client', () => {
  /** The built CLI with a module-resolution hook that notes every import of @kubernetes/client-node. */
  function run(log: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
    const hook = `import { appendFileSync } from 'node:fs';
      export async function resolve(specifier, context, next) {
        if (specifier.startsWith('@kubernetes/client-node')) appendFileSync(${JSON.stringify(log)}, specifier + '\\n');
        return next(specifier, context);
      }`;
    const register = `import { register } from 'node:module';
      register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
    const child = spawn(
      process.execPath,
      ['--import', `data:text/javascript,${encodeURIComponent(register)}`, CLI, 'get', ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
      child.on('exit', (code) => resolve({ code, stderr })),
    );
    return within(exited, 15_000, `leafbridge get ${args.join(' ')}`).finally(() => child.kill('SIGKILL'));
  }

  it('an agent that closes every connection unanswered is one line on stderr, exit 1', async () => {
    const closer = createNetServer((socket) => socket.destroy());
    await new Promise<void>((r) => closer.listen(0, '127.0.0.1', r));
    const { port } = closer.address() as AddressInfo;
    const r = await run(join(dir.path, 'closer-imports.log'), [
      'devices',
      '--server',
      `http://127.0.0.1:${port}`,
    ]).finally(() => closer.close());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot reach the agent at http:\/\/127\.0\.0\.1:\d+: .+\n$/);
  });

  it('the agent path never imports @kubernetes/client-node; the cluster path does', async () => {
    // An agent's API on port 0 that lists no devices: the agent path runs to its end.
    const agentApi = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ apiVersion: 'leafbridge.io/v1alpha1', kind: 'DeviceList', items: [] }));
    });
    await new Promise<void>((r) => agentApi.listen(0, '127.0.0.1', r));
    const { port } = agentApi.address() as AddressInfo;
    const agentLog = join(dir.path, 'agent-imports.log');
    const agentRun = await run(agentLog, ['devices', '--server', `http://127.0.0.1:${port}`]).finally(() =>
      agentApi.close(),
    );
    expect(agentRun).toMatchObject({ code: 0, stderr: 'No resources found.\n' });
    expect(existsSync(agentLog)).toBe(false);

    const clusterLog = join(dir.path, 'cluster-imports.log');
    const clusterRun = await run(clusterLog, ['devices', '--kubeconfig', kubeconfig]);
    expect(clusterRun.code).toBe(0);
    expect(readFileSync(clusterLog, 'utf8')).toContain('@kubernetes/client-node');
  });
});
