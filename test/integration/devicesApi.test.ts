import { request } from 'node:http';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { devicesApi } from '../../src/api/devicesApi.js';
import { HttpApi } from '../../src/api/http.js';
import { HttpAuth } from '../../src/api/httpAuth.js';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { getCommand } from '../../src/cli/getCommand.js';
import type { DiscoveryConfigEntry } from '../../src/config/schema.js';
import { type Db, openDb } from '../../src/database/db.js';
import { API_VERSION, type Condition, type DiscoveryConfigObject } from '../../src/model/resources.js';
import { LocalConfigStore } from '../../src/registry/localConfigStore.js';
import { LocalDeviceStore } from '../../src/registry/localDeviceStore.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';
import { device } from '../contract/deviceStore.contract.js';
import { tempDir } from '../helpers/processes.js';
import { captureOutput, within } from '../helpers/wait.js';

/**
 * The agent's HTTP API for Devices and DiscoveryConfigs: a real HttpApi on 127.0.0.1:0 over the standalone
 * stores (SQLite), driven with fetch. Answers are Kubernetes-shaped, failures Kubernetes Status bodies.
 */

const logger = silentLogger();
const FILE_CONFIG: DiscoveryConfigEntry = {
  name: 'from-file',
  spec: {
    handler: { name: 'debug-echo', details: { devices: [{ id: 'f-1' }] } },
    capacity: 1,
    properties: {},
  },
};
const RUNNING: Condition = {
  type: 'Running',
  status: 'True',
  reason: 'Discovering',
  message: '',
  lastTransitionTime: '2025-01-01T00:00:00Z',
};

interface Agent {
  base: string;
  db: Db;
  devices: LocalDeviceStore;
  configs: LocalConfigStore;
  stop(): Promise<void>;
}

let dir: ReturnType<typeof tempDir>;
let agent: Agent;

async function startAgent(writable: boolean, path: string): Promise<Agent> {
  const db = openDb(path, { synchronous: 'normal' });
  const devices = new LocalDeviceStore({ db, namespace: 'default', logger, clock: systemClock });
  const configs = new LocalConfigStore({
    db,
    namespace: 'default',
    logger,
    clock: systemClock,
    handlers: builtinHandlers,
    fileConfigs: [FILE_CONFIG],
  });
  await configs.start();
  const runtime = (name: string) => (name === 'from-file' ? [RUNNING] : []);
  const http = new HttpApi({
    logger,
    // The API's answers are what this file tests; who may ask is test/integration/httpAuth.test.ts's.
    auth: new HttpAuth({ logger, anonymous: 'read-write', cacheTtlMs: 0 }),
    metrics: new Registry(),
    ready: () => ({ ready: true, details: {} }),
    routes: { '/api/v1/': devicesApi({ devices, configs, writable, runtime, logger }) },
  });
  const { port } = await http.start({ host: '127.0.0.1', port: 0 });
  return {
    base: `http://127.0.0.1:${port}/api/v1`,
    db,
    devices,
    configs,
    stop: async () => {
      await http.stop();
      await configs.close();
      await devices.close();
      if (db.open) db.close();
    },
  };
}

/** What the API answers (objects, lists or Status bodies), typed loosely for assertions. */
interface Body {
  apiVersion?: string;
  kind?: string;
  message?: string;
  metadata: { name: string; resourceVersion: string; generation: number };
  spec: { capacity: number; handler: { details: { devices: unknown } } };
  status: { conditions: Condition[] };
  items: Body[];
  details: { name: string; kind: string; causes: { field: string; message: string }[] };
}

/** One request, bounded in time; the body parsed as JSON. */
async function call(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Body; headers: Headers }> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers = { 'content-type': 'application/json' };
  }
  const res = await within(fetch(`${agent.base}${path}`, init), 10_000, `${method} ${path}`);
  return { status: res.status, body: (await res.json()) as Body, headers: res.headers };
}

function configObject(
  name: string,
  details: unknown = { devices: [{ id: 'a-1' }] },
  metadata: Record<string, unknown> = {},
) {
  return {
    apiVersion: API_VERSION,
    kind: 'DiscoveryConfig',
    metadata: { name, ...metadata },
    spec: { handler: { name: 'debug-echo', details }, capacity: 2 },
  };
}

const statusBody = (code: number, reason: string) => ({
  apiVersion: 'v1',
  kind: 'Status',
  status: 'Failure',
  code,
  reason,
});

beforeEach(async () => {
  dir = tempDir('lb-devices-api-');
  agent = await startAgent(true, dir.path);
});
afterEach(async () => {
  await agent.stop();
  dir.remove();
});

describe('devices', () => {
  beforeEach(async () => {
    await agent.devices.upsert(device('cam-1', 'cams'));
    await agent.devices.upsert(device('cam-2', 'cams'));
    await agent.devices.upsert(device('plc-1', 'plcs'));
  }, 10_000);

  it('lists and gets Devices, Kubernetes-shaped', async () => {
    const list = await call('GET', '/devices');
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ apiVersion: API_VERSION, kind: 'DeviceList' });
    expect(list.body.items.map((d) => d.metadata.name)).toEqual(['cam-1', 'cam-2', 'plc-1']);

    const one = await call('GET', '/devices/cam-2');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      kind: 'Device',
      metadata: { name: 'cam-2' },
      spec: { configName: 'cams' },
    });

    const missing = await call('GET', '/devices/nope');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({
      ...statusBody(404, 'NotFound'),
      message: 'devices "nope" not found',
      details: { name: 'nope', kind: 'devices' },
    });
  });

  it('filters by labelSelector; a bad selector is a 400 Status', async () => {
    const names = async (selector: string) =>
      (await call('GET', `/devices?labelSelector=${encodeURIComponent(selector)}`)).body.items.map(
        (d) => d.metadata.name,
      );
    expect(await names('leafbridge.io/config=cams')).toEqual(['cam-1', 'cam-2']);
    expect(await names('leafbridge.io/config!=cams')).toEqual(['plc-1']);
    expect(await names('leafbridge.io/config=cams,leafbridge.io/handler=opcua')).toEqual([]);
    expect(await names('')).toHaveLength(3);

    const bad = await call('GET', `/devices?labelSelector=${encodeURIComponent('tier in (a,b)')}`);
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject(statusBody(400, 'BadRequest'));
    expect(bad.body.message).toMatch(/labelSelector.*tier in/);
  });

  it('devices are read-only: other methods are 405 with Allow', async () => {
    const res = await call('DELETE', '/devices/cam-1');
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
    expect(res.body).toMatchObject(statusBody(405, 'MethodNotAllowed'));
    expect(await agent.devices.get('cam-1')).toBeDefined();
  });
});

describe('discoveryconfigs', () => {
  it('lists and gets configs with the node-local conditions merged in, not stored', async () => {
    const list = await call('GET', '/discoveryconfigs');
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ apiVersion: API_VERSION, kind: 'DiscoveryConfigList' });
    expect(list.body.items).toHaveLength(1);
    expect(list.body.items[0]?.status.conditions).toContainEqual(RUNNING);

    const one = await call('GET', '/discoveryconfigs/from-file');
    expect(one.body).toMatchObject({ kind: 'DiscoveryConfig', metadata: { name: 'from-file' } });
    expect(one.body.status.conditions).toContainEqual(RUNNING);
    const stored = agent.configs.list()[0] as DiscoveryConfigObject;
    expect(stored.status.conditions.map((c) => c.type)).not.toContain('Running');

    expect((await call('GET', '/discoveryconfigs/nope')).body).toMatchObject(statusBody(404, 'NotFound'));
  });

  it('creates a config from a DiscoveryConfig object or a config-file entry: 201; again: 409', async () => {
    const created = await call('POST', '/discoveryconfigs', configObject('cams'));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      apiVersion: API_VERSION,
      kind: 'DiscoveryConfig',
      metadata: { name: 'cams', namespace: 'default' },
      spec: { handler: { name: 'debug-echo' }, capacity: 2, properties: {} },
    });
    expect(created.body.metadata.resourceVersion).toMatch(/^\d+$/);

    const entry = await call('POST', '/discoveryconfigs', {
      name: 'plain',
      spec: { handler: { name: 'debug-echo', details: { devices: [] } } },
    });
    expect(entry.status).toBe(201);
    expect(entry.body.spec.capacity).toBe(1); // the schema's default

    const again = await call('POST', '/discoveryconfigs', configObject('cams'));
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({
      ...statusBody(409, 'AlreadyExists'),
      details: { name: 'cams', kind: 'discoveryconfigs' },
    });
    const names = (await call('GET', '/discoveryconfigs')).body.items.map((c) => c.metadata.name);
    expect(names).toEqual(['cams', 'from-file', 'plain']);
  });

  it('refuses invalid configs with 422 and every cause by its field', async () => {
    const bad = await call('POST', '/discoveryconfigs', configObject('bad', { devices: 'many' }));
    expect(bad.status).toBe(422);
    expect(bad.body).toMatchObject({
      ...statusBody(422, 'Invalid'),
      details: { name: 'bad', kind: 'discoveryconfigs' },
    });
    expect(bad.body.details.causes).toEqual([
      expect.objectContaining({ field: expect.stringMatching(/^spec\.handler\.details\.devices/) }),
    ]);

    const unnamed = await call('POST', '/discoveryconfigs', { ...configObject('x'), metadata: {} });
    expect(unnamed.status).toBe(422);
    expect(unnamed.body.details.causes.map((c) => c.field)).toContain('metadata.name');

    const handler = await call('POST', '/discoveryconfigs', {
      name: 'Not_A_Label',
      spec: { handler: { name: 'teleport', details: {} }, capacity: 0 },
    });
    expect(handler.status).toBe(422);
    const fields = handler.body.details.causes.map((c) => c.field);
    expect(fields).toEqual(expect.arrayContaining(['name', 'spec.capacity']));
    expect((await call('GET', '/discoveryconfigs')).body.items).toHaveLength(1);
  });

  it('replaces a config: 200; a stale resourceVersion 409; another name in the body 400; unknown 404', async () => {
    const created = (await call('POST', '/discoveryconfigs', configObject('cams'))).body;
    const rv = created.metadata.resourceVersion as string;

    const changed = configObject('cams', { devices: [{ id: 'a-2' }] }, { resourceVersion: rv });
    const replaced = await call('PUT', '/discoveryconfigs/cams', changed);
    expect(replaced.status).toBe(200);
    expect(replaced.body.spec.handler.details.devices).toEqual([{ id: 'a-2' }]);
    expect(Number(replaced.body.metadata.resourceVersion)).toBeGreaterThan(Number(rv));
    expect(replaced.body.metadata.generation).toBe(2);

    const stale = await call('PUT', '/discoveryconfigs/cams', changed);
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject(statusBody(409, 'Conflict'));

    const unchecked = await call('PUT', '/discoveryconfigs/cams', configObject('cams', { devices: [] }));
    expect(unchecked.status).toBe(200); // no resourceVersion: no optimistic check

    const renamed = await call('PUT', '/discoveryconfigs/cams', configObject('other'));
    expect(renamed.status).toBe(400);
    expect(renamed.body).toMatchObject(statusBody(400, 'BadRequest'));
    expect(renamed.body.message).toBe(
      'the name of the object (other) does not match the name on the URL (cams)',
    );

    const missing = await call('PUT', '/discoveryconfigs/ghost', configObject('ghost'));
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ ...statusBody(404, 'NotFound'), details: { name: 'ghost' } });

    const invalid = await call('PUT', '/discoveryconfigs/cams', { name: 'cams', spec: { capacity: 'x' } });
    expect(invalid.status).toBe(422);
  });

  it('deletes a config: 200, then 404', async () => {
    await call('POST', '/discoveryconfigs', configObject('cams'));
    const deleted = await call('DELETE', '/discoveryconfigs/cams');
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({ kind: 'DiscoveryConfig', metadata: { name: 'cams' } });
    expect((await call('DELETE', '/discoveryconfigs/cams')).body).toMatchObject(statusBody(404, 'NotFound'));
    expect((await call('GET', '/discoveryconfigs/cams')).status).toBe(404);
  });

  it('configs from the config file are read-only: 403', async () => {
    const put = await call('PUT', '/discoveryconfigs/from-file', {
      ...FILE_CONFIG,
      spec: { ...FILE_CONFIG.spec, capacity: 3 },
    });
    expect(put.status).toBe(403);
    expect(put.body).toMatchObject({
      ...statusBody(403, 'Forbidden'),
      details: { name: 'from-file', kind: 'discoveryconfigs' },
    });
    expect((await call('DELETE', '/discoveryconfigs/from-file')).status).toBe(403);
    const post = await call('POST', '/discoveryconfigs', FILE_CONFIG);
    expect(post.status).toBe(409);
    expect(agent.configs.list()[0]?.spec.capacity).toBe(1);
  });

  it('malformed, empty, non-object and oversize bodies are 400 and 413 Status answers', async () => {
    const malformed = await call('POST', '/discoveryconfigs', '{"name": "x", "spec": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject(statusBody(400, 'BadRequest'));
    expect(malformed.body.message).toMatch(/^the request body is not valid JSON: /);

    expect((await call('POST', '/discoveryconfigs', '')).body.message).toMatch(/empty/);
    expect((await call('POST', '/discoveryconfigs', '[1, 2]')).status).toBe(400);
    expect((await call('POST', '/discoveryconfigs', 'null')).status).toBe(400);
    const wrongKind = await call('POST', '/discoveryconfigs', { ...configObject('x'), kind: 'Device' });
    expect(wrongKind.status).toBe(400);
    expect(wrongKind.body.message).toMatch(/kind must be DiscoveryConfig/);

    const big = JSON.stringify(configObject('big', { devices: [{ id: 'x'.repeat(1024 * 1024) }] }));
    const tooLarge = await call('POST', '/discoveryconfigs', big);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body).toMatchObject(statusBody(413, 'RequestEntityTooLarge'));

    // Streamed without a content-length (chunked): cut off at the limit, the answer still arrives.
    const chunked = await new Promise<{ status: number; body: Body }>((resolve, reject) => {
      const req = request(`${agent.base}/discoveryconfigs`, { method: 'POST' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString()) as Body,
          }),
        );
      });
      req.on('error', reject);
      for (let i = 0; i < 40; i++) req.write(Buffer.alloc(64 * 1024, 0x20));
      req.end();
    });
    expect(chunked.status).toBe(413);
    expect((await call('GET', '/discoveryconfigs')).status).toBe(200); // still serving
  });

  it('other methods are 405 with Allow; unknown paths 404 Status', async () => {
    const patch = await call('PATCH', '/discoveryconfigs/from-file', {});
    expect(patch.status).toBe(405);
    expect(patch.headers.get('allow')).toBe('GET, PUT, DELETE');
    const putAll = await call('PUT', '/discoveryconfigs', {});
    expect(putAll.headers.get('allow')).toBe('GET, POST');
    for (const path of ['/gizmos', '/devices/a/b', '/discoveryconfigs//x', '/']) {
      const res = await call('GET', path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).toMatchObject(statusBody(404, 'NotFound'));
    }
  });

  it('a failing store answers 500 Status and the API keeps serving', async () => {
    agent.db.close();
    const res = await call('GET', '/devices');
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject(statusBody(500, 'InternalError'));
    expect((await call('GET', '/nothing-here')).status).toBe(404);
  });
});

describe('in a cluster (not writable)', () => {
  let readOnly: Agent;
  let roDir: ReturnType<typeof tempDir>;
  beforeEach(async () => {
    roDir = tempDir('lb-devices-api-ro-');
    readOnly = await startAgent(false, roDir.path);
  });
  afterEach(async () => {
    await readOnly.stop();
    roDir.remove();
  });

  it('writes are 405: configs live in the cluster, change them with kubectl', async () => {
    const base = agent.base;
    agent.base = readOnly.base;
    try {
      for (const [method, path] of [
        ['POST', '/discoveryconfigs'],
        ['PUT', '/discoveryconfigs/from-file'],
        ['DELETE', '/discoveryconfigs/from-file'],
      ] as const) {
        const res = await call(method, path, configObject('from-file'));
        expect(res.status, method).toBe(405);
        expect(res.headers.get('allow')).toBe('GET');
        expect(res.body).toMatchObject(statusBody(405, 'MethodNotAllowed'));
        expect(res.body.message).toMatch(/cluster.*kubectl/);
      }
      expect((await call('GET', '/discoveryconfigs')).body.items).toHaveLength(1);
    } finally {
      agent.base = base;
    }
  });
});

describe('leafbridge get against this API', () => {
  /** The real command in-process, stdout and stderr captured (and restored), bounded in time. */
  function get(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const server = agent.base.replace(/\/api\/v1$/, '');
    return captureOutput(() => getCommand([...args, '--server', server]), 10_000, `get ${args.join(' ')}`);
  }

  beforeEach(async () => {
    await agent.devices.upsert(device('cam-1', 'cams'));
    await agent.devices.upsert(device('plc-1', 'plcs'));
  }, 10_000);

  it('prints tables; -l goes to the API as labelSelector', async () => {
    const all = await get('devices');
    expect(all.code).toBe(0);
    expect(all.out).toMatch(
      /^NAME\s+CONFIG\s+HANDLER\s+ONLINE\s+NODES\s+AGE\ncam-1\s+cams\s+onvif\s+true\s+edge-1\s/,
    );
    const cams = await get('devices', '-l', 'leafbridge.io/config=plcs', '-o', 'json');
    expect(cams.code).toBe(0);
    const list = JSON.parse(cams.out) as Body;
    expect(list).toMatchObject({ apiVersion: API_VERSION, kind: 'DeviceList' });
    expect(list.items.map((d) => d.metadata.name)).toEqual(['plc-1']);

    const configs = await get('configs');
    expect(configs.out).toMatch(/\nfrom-file\s+debug-echo\s+1\s+0\s+\S+\s+True\s+\d+s\n$/);
  });

  it('NotFound, a bad selector and another namespace read like kubectl', async () => {
    expect(await get('devices', 'nope')).toEqual({
      code: 1,
      out: '',
      err: 'Error from server (NotFound): devices "nope" not found\n',
    });
    const bad = await get('devices', '-l', 'a in (b)');
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^Error from server \(BadRequest\): invalid labelSelector: .+\n$/);
    expect(await get('devices', '-n', 'elsewhere')).toEqual({
      code: 0,
      out: '',
      err: 'No resources found in elsewhere namespace.\n',
    });
  });

  it('an agent that is not there is one line on stderr, exit 1', async () => {
    const base = agent.base;
    await agent.stop();
    const r = await get('devices');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      new RegExp(`^error: cannot reach the agent at ${base.replace(/\/api\/v1$/, '')}: ECONNREFUSED\n$`),
    );
    agent = await startAgent(true, dir.path); // for afterEach
  });
});
