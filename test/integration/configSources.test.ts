import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import type { DiscoveryConfigEntry } from '../../src/config/schema.js';
import { type Db, openDb } from '../../src/database/db.js';
import { crdManifests } from '../../src/install/crds.js';
import type { Condition, DiscoveryConfigObject } from '../../src/model/resources.js';
import type { ConfigWriteResult } from '../../src/registry/configSource.js';
import { KubeConfigSource } from '../../src/registry/kubeConfigSource.js';
import { LocalConfigStore } from '../../src/registry/localConfigStore.js';
import { systemClock } from '../../src/util/clock.js';
import { createLogger, type Logger, silentLogger } from '../../src/util/logger.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import { kubeClients, mergePatch, within } from '../helpers/kubeClient.js';
import { tempDir } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/**
 * The DiscoveryConfig sources: the standalone agent's SQLite store (seeded from the config file, written
 * through the HTTP API) and the Kubernetes source (list+watch, nodeSelector, cache for outages, status
 * writes), the latter against the test API server.
 */

const logger = silentLogger();

function entry(name: string, details: Record<string, unknown> = { interface: 'eth1' }, more = {}) {
  return {
    name,
    spec: { handler: { name: 'onvif', details }, capacity: 1, properties: {}, ...more },
  } as DiscoveryConfigEntry;
}

function names(configs: readonly DiscoveryConfigObject[]): string[] {
  return configs.map((c) => c.metadata.name);
}

function valid(status: Condition['status'], message = 'details are valid', at = new Date().toISOString()) {
  return [
    {
      type: 'Valid',
      status,
      reason: status === 'True' ? 'Valid' : 'Invalid',
      message,
      lastTransitionTime: at,
    },
  ];
}

function ok(result: ConfigWriteResult): DiscoveryConfigObject {
  if (!result.ok) throw new Error(`write refused: ${JSON.stringify(result.error)}`);
  return result.object;
}

function refused(result: ConfigWriteResult) {
  if (result.ok) throw new Error('expected the write to be refused');
  return result.error;
}

/** A logger whose lines the test can read. */
function capturedLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  return { logger: createLogger({ level: 'info', destination: stream }), lines };
}

// ------------------------------------------------------------------------------------ LocalConfigStore

describe('LocalConfigStore (SQLite)', () => {
  let dir: ReturnType<typeof tempDir>;
  const open: { store: LocalConfigStore; db: Db }[] = [];

  async function openStore(fileConfigs: DiscoveryConfigEntry[]): Promise<LocalConfigStore> {
    const db = openDb(dir.path, { synchronous: 'normal' });
    const store = new LocalConfigStore({
      db,
      namespace: 'default',
      logger,
      clock: systemClock,
      handlers: builtinHandlers,
      fileConfigs,
    });
    open.push({ store, db });
    await store.start();
    return store;
  }

  async function reopen(fileConfigs: DiscoveryConfigEntry[]): Promise<LocalConfigStore> {
    for (const { store, db } of open.splice(0)) {
      await store.close();
      db.close();
    }
    return openStore(fileConfigs);
  }

  beforeEach(() => {
    dir = tempDir('lb-configs-');
  });
  afterEach(async () => {
    for (const { store, db } of open.splice(0)) {
      await store.close();
      db.close();
    }
    dir.remove();
  });

  it('seeds the config file entries (source file, defaults applied), keeps API-created ones across a re-open, drops file ones no longer in the file', async () => {
    const first = await openStore([entry('cams'), entry('plcs', { interface: 'eth2' })]);
    ok(first.create(entry('extra')));
    const cams = first.list().find((c) => c.metadata.name === 'cams');
    expect(names(first.list())).toEqual(['cams', 'extra', 'plcs']);
    expect(cams?.metadata).toMatchObject({
      namespace: 'default',
      generation: 1,
      annotations: { 'leafbridge.io/source': 'file' },
    });
    expect(cams?.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(cams?.metadata.creationTimestamp).toMatch(/Z$/);
    expect(cams?.spec).toEqual({
      handler: { name: 'onvif', details: { interface: 'eth1' } },
      capacity: 1,
      properties: {},
    });
    expect(first.list().find((c) => c.metadata.name === 'extra')?.metadata.annotations).toEqual({
      'leafbridge.io/source': 'api',
    });

    // Restart with a changed file: plcs is gone, cams changed (generation bumped, uid kept).
    const second = await reopen([entry('cams', { interface: 'eth9' })]);
    expect(names(second.list())).toEqual(['cams', 'extra']);
    const cams2 = second.list().find((c) => c.metadata.name === 'cams');
    expect(cams2?.metadata.uid).toBe(cams?.metadata.uid);
    expect(cams2?.metadata.generation).toBe(2);
    expect(cams2?.spec.handler.details).toEqual({ interface: 'eth9' });
    expect(Number(cams2?.metadata.resourceVersion)).toBeGreaterThan(Number(cams?.metadata.resourceVersion));

    // The same file again changes nothing.
    const before = second.list();
    const third = await reopen([entry('cams', { interface: 'eth9' })]);
    expect(third.list()).toEqual(before);
  });

  it('create/replace/delete: 422 with causes, 403 for file configs, 409 AlreadyExists and Conflict, 404', async () => {
    const store = await openStore([entry('cams')]);

    const badDetails = refused(store.create(entry('bad', { interface: 5, bogus: true })));
    expect(badDetails).toMatchObject({ code: 422, reason: 'Invalid' });
    if (badDetails.code !== 422) throw new Error('not 422');
    expect(badDetails.causes).toEqual(
      expect.arrayContaining([
        { field: 'spec.handler.details.interface', message: 'expected string' },
        { field: 'spec.handler.details.bogus', message: 'unknown key' },
      ]),
    );
    const unknown = refused(
      store.create({
        ...entry('bad'),
        spec: { ...entry('bad').spec, handler: { name: 'nope', details: {} } },
      }),
    );
    expect(unknown.code === 422 && unknown.causes.map((c) => c.field)).toEqual(['spec.handler.name']);
    expect(unknown.message).toContain('unknown handler nope');
    const schema = refused(
      store.create({ name: 'Not_A_Name', spec: { handler: { name: 'onvif' }, capacity: 0 } } as never),
    );
    expect(schema.code === 422 && schema.causes.map((c) => c.field).sort()).toEqual([
      'name',
      'spec.capacity',
    ]);
    expect(names(store.list())).toEqual(['cams']);

    // Defaults applied on create.
    const created = ok(
      store.create({
        name: 'extra',
        spec: { handler: { name: 'onvif', details: { interface: 'lo' } } },
      } as never),
    );
    expect(created.spec).toMatchObject({ capacity: 1, properties: {} });
    expect(created.metadata.generation).toBe(1);
    expect(refused(store.create(entry('extra')))).toMatchObject({ code: 409, reason: 'AlreadyExists' });
    expect(refused(store.create(entry('cams')))).toMatchObject({ code: 409, reason: 'AlreadyExists' });

    // File configs are read-only.
    for (const error of [
      refused(store.replace('cams', entry('cams', { interface: 'eth3' }))),
      refused(store.delete('cams')),
    ]) {
      expect(error).toMatchObject({ code: 403, reason: 'Forbidden' });
      expect(error.message).toContain('defined in the config file');
    }

    // Replace: generation bumps with the spec, a stale resourceVersion conflicts, an unchanged spec is a no-op.
    const replaced = ok(
      store.replace('extra', entry('extra', { interface: 'eth4' }), created.metadata.resourceVersion),
    );
    expect(replaced.metadata.generation).toBe(2);
    expect(replaced.metadata.uid).toBe(created.metadata.uid);
    expect(refused(store.replace('extra', entry('extra'), created.metadata.resourceVersion))).toMatchObject({
      code: 409,
      reason: 'Conflict',
    });
    const same = ok(store.replace('extra', entry('extra', { interface: 'eth4' })));
    expect(same.metadata.resourceVersion).toBe(replaced.metadata.resourceVersion);
    const badReplace = refused(store.replace('extra', entry('extra', {})));
    expect(badReplace.code === 422 && badReplace.causes[0]?.field).toBe('spec.handler.details.interface');
    expect(refused(store.replace('extra', entry('other')))).toMatchObject({ code: 422 });

    expect(refused(store.replace('missing', entry('missing')))).toMatchObject({
      code: 404,
      reason: 'NotFound',
    });
    expect(refused(store.delete('missing'))).toMatchObject({ code: 404, reason: 'NotFound' });
    expect(ok(store.delete('extra')).metadata.name).toBe('extra');
    expect(names(store.list())).toEqual(['cams']);

    // Persisted: a re-open sees the same (and a deleted config stays deleted).
    ok(store.create(entry('kept')));
    const again = await reopen([entry('cams')]);
    expect(names(again.list())).toEqual(['cams', 'kept']);
  });

  it('watchers hear the whole list after each change; a throwing watcher is contained; status is stored, a no-op when unchanged', async () => {
    const store = await openStore([entry('cams')]);
    const heard: string[][] = [];
    store.watch(() => {
      throw new Error('a broken watcher');
    });
    const stop = store.watch((configs) => heard.push(names(configs)));
    ok(store.create(entry('b')));
    ok(store.replace('b', entry('b', { interface: 'eth5' })));
    ok(store.create(entry('a')));
    ok(store.delete('b'));
    expect(heard).toEqual([
      ['b', 'cams'],
      ['b', 'cams'],
      ['a', 'b', 'cams'],
      ['a', 'cams'],
    ]);

    const rv = store.list()[1]?.metadata.resourceVersion;
    store.reportStatus('cams', { conditions: valid('True'), devices: 3 });
    const cams = store.list().find((c) => c.metadata.name === 'cams');
    expect(cams?.status).toMatchObject({ devices: 3, conditions: [{ type: 'Valid', status: 'True' }] });
    const statusRv = cams?.metadata.resourceVersion;
    expect(Number(statusRv)).toBeGreaterThan(Number(rv));
    // The same report, at another time: nothing written, the transition time kept.
    store.reportStatus('cams', {
      conditions: valid('True', 'details are valid', '2030-01-01T00:00:00Z'),
      devices: 3,
    });
    expect(store.list().find((c) => c.metadata.name === 'cams')).toEqual(cams);
    store.reportStatus('nope', { conditions: valid('True') });
    expect(heard).toHaveLength(4); // status writes are not spec changes

    stop();
    ok(store.create(entry('c')));
    expect(heard).toHaveLength(4);
    const reopened = await reopen([entry('cams')]);
    expect(reopened.list().find((c) => c.metadata.name === 'cams')?.status.devices).toBe(3);
  });
});

// ------------------------------------------------------------------------------------ KubeConfigSource

function kubeConfig(name: string, details: Record<string, unknown> = { interface: 'eth1' }, more = {}) {
  return {
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name, namespace: 'default' },
    spec: { handler: { name: 'onvif', details }, ...more },
  };
}

describe('KubeConfigSource against the test API server', () => {
  let api: KubeApiServer;
  let dir: ReturnType<typeof tempDir>;
  let db: Db;
  const sources: KubeConfigSource[] = [];

  function source(options: { logger?: Logger; nodeRefreshMs?: number } = {}): KubeConfigSource {
    const s = new KubeConfigSource({
      kubeConfig: kubeClients(api).kc,
      namespace: 'default',
      node: 'edge-1',
      db,
      logger: options.logger ?? logger,
      backoff: { baseMs: 50, maxMs: 400 },
      ...(options.nodeRefreshMs ? { nodeRefreshMs: options.nodeRefreshMs } : {}),
    });
    sources.push(s);
    return s;
  }

  function statusPatches(name?: string) {
    return api.requests({
      verb: 'patch',
      resource: 'discoveryconfigs',
      subresource: 'status',
      ...(name ? { name } : {}),
    });
  }

  function serverStatus(name: string) {
    return api.object('discoveryconfigs', 'default', name)?.status as
      | DiscoveryConfigObject['status']
      | undefined;
  }

  beforeEach(async () => {
    api = await KubeApiServer.start({ crds: crdManifests(builtinHandlers), bookmarkIntervalMs: 100 });
    api.seed('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'edge-1', labels: { zone: 'a' } },
    });
    api.seed('discoveryconfigs', kubeConfig('cams'));
    api.seed(
      'discoveryconfigs',
      kubeConfig('zone-a', { interface: 'eth2' }, { nodeSelector: { zone: 'a' } }),
    );
    api.seed(
      'discoveryconfigs',
      kubeConfig('zone-b', { interface: 'eth3' }, { nodeSelector: { zone: 'b' } }),
    );
    dir = tempDir('lb-kubeconfigs-');
    db = openDb(dir.path, { synchronous: 'normal' });
  });
  afterEach(async () => {
    for (const s of sources.splice(0)) await s.close();
    await api.close();
    db.close();
    dir.remove();
  });

  it("offers the configs whose nodeSelector matches the node, and follows the node's labels", async () => {
    const s = source({ nodeRefreshMs: 100 });
    await within(s.start(), 5000, 'start');
    expect(names(s.list())).toEqual(['cams', 'zone-a']);
    expect(s.list()[0]).toMatchObject({
      metadata: { name: 'cams', namespace: 'default', generation: 1 },
      spec: { handler: { name: 'onvif', details: { interface: 'eth1' } }, capacity: 1, properties: {} },
      status: { conditions: [], devices: 0 },
    });
    expect(api.requests({ verb: 'get', resource: 'nodes', name: 'edge-1' }).length).toBeGreaterThan(0);

    const heard: string[][] = [];
    s.watch((configs) => heard.push(names(configs)));
    const { core } = kubeClients(api);
    await core.patchNode({ name: 'edge-1', body: { metadata: { labels: { zone: 'b' } } } }, mergePatch);
    await until(() => heard.length > 0, 5000, 'the relabelled node');
    expect(heard.at(-1)).toEqual(['cams', 'zone-b']);
    expect(names(s.list())).toEqual(['cams', 'zone-b']);
  });

  it('sees a config added, changed and deleted through its watch; a status-only change is not news', async () => {
    const s = source();
    await within(s.start(), 5000, 'start');
    const heard: DiscoveryConfigObject[][] = [];
    s.watch((configs) => heard.push(configs));
    const { custom } = kubeClients(api);
    const ref = {
      group: 'leafbridge.io',
      version: 'v1alpha1',
      namespace: 'default',
      plural: 'discoveryconfigs',
    };

    await custom.createNamespacedCustomObject({ ...ref, body: kubeConfig('new') });
    await until(() => heard.length === 1, 5000, 'the added config');
    expect(names(heard[0] ?? [])).toEqual(['cams', 'new', 'zone-a']);

    await custom.patchNamespacedCustomObject(
      { ...ref, name: 'new', body: { spec: { handler: { name: 'onvif', details: { interface: 'eth7' } } } } },
      mergePatch,
    );
    await until(() => heard.length === 2, 5000, 'the changed config');
    const changed = heard[1]?.find((c) => c.metadata.name === 'new');
    expect(changed?.spec.handler.details).toEqual({ interface: 'eth7' });
    expect(changed?.metadata.generation).toBe(2);

    await custom.patchNamespacedCustomObjectStatus(
      { ...ref, name: 'new', body: { status: { devices: 4 } } },
      mergePatch,
    );
    await until(
      () => s.list().find((c) => c.metadata.name === 'new')?.status.devices === 4,
      5000,
      'the status',
    );
    expect(heard).toHaveLength(2);

    await custom.deleteNamespacedCustomObject({ ...ref, name: 'new' });
    await until(() => heard.length === 3, 5000, 'the deleted config');
    expect(names(heard[2] ?? [])).toEqual(['cams', 'zone-a']);
    // A config for another zone changes nothing this node runs.
    api.seed('discoveryconfigs', kubeConfig('zone-b3', { interface: 'x' }, { nodeSelector: { zone: 'b' } }));
    await new Promise((r) => setTimeout(r, 300));
    expect(heard).toHaveLength(3);
  });

  it('a cut watch resumes; a 410 after compaction re-lists (and re-reads the node)', async () => {
    const s = source();
    await within(s.start(), 5000, 'start');
    const heard: string[][] = [];
    s.watch((configs) => heard.push(names(configs)));
    const lists = api.requests({ verb: 'list', resource: 'discoveryconfigs' }).length;
    const nodeReads = api.requests({ verb: 'get', resource: 'nodes' }).length;

    api.closeWatches();
    api.seed('discoveryconfigs', kubeConfig('after-cut'));
    await until(() => heard.some((l) => l.includes('after-cut')), 5000, 'the config after the re-watch');
    expect(api.requests({ verb: 'list', resource: 'discoveryconfigs' }).length).toBe(lists);

    await until(() => api.openWatches > 0, 5000, 'watching again');
    api.closeWatches(); // before it re-watches: changes it has not seen, then a compaction → 410
    api.seed('discoveryconfigs', kubeConfig('after-compaction'));
    api.resources.delete(api.type('discoveryconfigs'), 'default', 'cams', {});
    api.compact();
    await until(
      () => names(s.list()).join() === 'after-compaction,after-cut,zone-a',
      5000,
      'the changes after the 410 re-list',
    );
    expect(api.requests({ verb: 'list', resource: 'discoveryconfigs' }).length).toBeGreaterThan(lists);
    expect(api.requests({ verb: 'get', resource: 'nodes' }).length).toBeGreaterThan(nodeReads);
  });

  it('API server down: a fresh source on the same store starts within seconds from the cached configs and labels, then follows the server again', async () => {
    const first = source();
    await within(first.start(), 5000, 'first start');
    expect(names(first.list())).toEqual(['cams', 'zone-a']);
    await first.close();

    await api.down();
    api.seed('discoveryconfigs', kubeConfig('while-down')); // straight into the store: nobody can see it yet
    const { logger: captured, lines } = capturedLogger();
    const second = source({ logger: captured });
    const started = Date.now();
    await within(second.start(), 4000, 'start from the cache');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(names(second.list())).toEqual(['cams', 'zone-a']); // zone-b stays filtered by the cached labels
    expect(second.list()[0]?.metadata.uid).toBe(first.list()[0]?.metadata.uid);
    expect(lines.some((l) => l.includes('running from the cached DiscoveryConfigs'))).toBe(true);

    const heard: string[][] = [];
    second.watch((configs) => heard.push(names(configs)));
    await api.up();
    await until(() => heard.length > 0, 5000, 'the server list after up()');
    expect(heard.at(-1)).toEqual(['cams', 'while-down', 'zone-a']);
  });

  it('a slow API server: start gives up on the first list after ~2 s and runs from the cache', async () => {
    const first = source();
    await within(first.start(), 5000, 'first start');
    await first.close();
    api.slow(3500);
    const second = source();
    const started = Date.now();
    await within(second.start(), 4000, 'start from the cache');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(names(second.list())).toEqual(['cams', 'zone-a']);
    api.slow(0);
    api.seed('discoveryconfigs', kubeConfig('later'));
    await until(() => names(second.list()).includes('later'), 10_000, 'the server list');
  });

  it('status reports go to /status only when conditions or the device count change; coalesced; unknown names ignored', async () => {
    const s = source();
    await within(s.start(), 5000, 'start');
    const first = '2024-01-01T00:00:00Z';
    s.reportStatus('cams', { conditions: valid('True', 'details are valid', first), devices: 2 });
    await until(() => serverStatus('cams')?.devices === 2, 5000, 'the first status');
    expect(statusPatches('cams')).toHaveLength(1);
    expect(serverStatus('cams')?.conditions).toEqual(valid('True', 'details are valid', first));

    // The same again (another time), and names this node does not run: no requests.
    s.reportStatus('cams', { conditions: valid('True'), devices: 2 });
    s.reportStatus('zone-b', { conditions: valid('True'), devices: 1 });
    s.reportStatus('nope', { conditions: valid('True'), devices: 1 });
    await new Promise((r) => setTimeout(r, 300));
    expect(statusPatches()).toHaveLength(1);

    // A message change is news; the transition time of an unchanged status is kept.
    s.reportStatus('cams', { conditions: valid('True', 'still valid'), devices: 2 });
    await until(
      () => serverStatus('cams')?.conditions[0]?.message === 'still valid',
      5000,
      'the new message',
    );
    expect(serverStatus('cams')?.conditions[0]?.lastTransitionTime).toBe(first);
    expect(statusPatches('cams')).toHaveLength(2);

    // A burst while the server is slow: a handful of writes, the last one wins.
    api.slow(150);
    for (let i = 0; i < 30; i++) s.reportStatus('zone-a', { conditions: valid('True'), devices: i });
    await until(() => serverStatus('zone-a')?.devices === 29, 5000, 'the last report of the burst');
    api.slow(0);
    expect(statusPatches('zone-a').length).toBeLessThanOrEqual(3);
    // Status writes did not trouble the spec watchers.
    expect(api.requests({ verb: 'update', resource: 'discoveryconfigs' })).toHaveLength(0);
  });

  it("a status write keeps the controller's BrokersReady and status.brokers: written before it, and between its read and its write (409, re-read, again)", async () => {
    const s = source();
    await within(s.start(), 5000, 'start');
    /** The controller's write, as it makes it: its condition and brokers, read-modify-written. */
    const controllerWrites = (ready: Condition['status'], running: number) => {
      const cur = api.object('discoveryconfigs', 'default', 'cams')!;
      const status = (cur.status ?? {}) as Partial<DiscoveryConfigObject['status']>;
      const brokersReady = {
        type: 'BrokersReady',
        status: ready,
        reason: ready === 'True' ? 'BrokersRunning' : 'BrokersNotRunning',
        message: `${running} of 1 broker pods running`,
        lastTransitionTime: new Date().toISOString(),
      };
      const conditions = [
        ...(status.conditions ?? []).filter((c) => c.type !== 'BrokersReady'),
        brokersReady,
      ];
      const next = { ...cur, status: { ...status, conditions, brokers: { wanted: 1, running } } };
      api.resources.update(api.type('discoveryconfigs'), 'default', 'cams', next, { subresource: 'status' });
    };
    const condition = (type: string) => serverStatus('cams')?.conditions.find((c) => c.type === type);
    const brokers = () => (serverStatus('cams') as { brokers?: unknown } | undefined)?.brokers;

    controllerWrites('True', 1);
    s.reportStatus('cams', { conditions: valid('False', 'interface: expected string'), devices: 0 });
    await until(() => condition('Valid')?.status === 'False', 5000, 'Valid=False');
    expect(condition('BrokersReady')).toMatchObject({ status: 'True' });
    expect(brokers()).toEqual({ wanted: 1, running: 1 });

    // The controller writes again right after the agent's view was taken, before the agent's write lands.
    api.clearLog();
    api.beforeNext({ verb: 'patch', resource: 'discoveryconfigs', subresource: 'status', name: 'cams' }, () =>
      controllerWrites('False', 0),
    );
    s.reportStatus('cams', { conditions: valid('True'), devices: 0 });
    await until(() => condition('Valid')?.status === 'True', 5000, 'Valid=True');
    expect(condition('BrokersReady')).toMatchObject({ status: 'False', reason: 'BrokersNotRunning' });
    expect(brokers()).toEqual({ wanted: 1, running: 0 });
    expect(statusPatches('cams').map((r) => r.status)).toEqual([409, 200]);
  });

  it('a report made while the server is down lands after up(); one for a config deleted meanwhile is dropped', async () => {
    const s = source();
    await within(s.start(), 5000, 'start');
    await api.down();
    s.reportStatus('cams', { conditions: valid('False', 'interface: expected string'), devices: 0 });
    s.reportStatus('zone-a', { conditions: valid('True'), devices: 5 });
    api.resources.delete(api.type('discoveryconfigs'), 'default', 'zone-a', {});
    await new Promise((r) => setTimeout(r, 400));
    await api.up();
    await until(() => serverStatus('cams')?.conditions[0]?.status === 'False', 5000, 'the report after up()');
    expect(serverStatus('cams')?.conditions[0]).toMatchObject({
      reason: 'Invalid',
      message: 'interface: expected string',
    });
    await until(() => !names(s.list()).includes('zone-a'), 5000, 'zone-a gone');
    await new Promise((r) => setTimeout(r, 500));
    expect(statusPatches('zone-a').filter((r) => r.status === 200)).toHaveLength(0);
    expect(statusPatches('zone-a').length).toBeLessThanOrEqual(1); // at most one 404, then dropped
    expect(api.object('discoveryconfigs', 'default', 'zone-a')).toBeUndefined();
  });
});
