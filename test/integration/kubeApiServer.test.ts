import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApisApi, BatchV1Api, KubernetesObjectApi, loadYaml, makeInformer } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { crdManifests } from '../../src/install/crds.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import {
  failure,
  jsonPatch,
  kubeClients,
  mergePatch,
  statusOf,
  until,
  watchWith,
  within,
} from '../helpers/kubeClient.js';
import { ROOT } from '../helpers/processes.js';

/**
 * The test API server, driven by the real client (@kubernetes/client-node's CustomObjectsApi, Watch and
 * informer), so what the agent's tests rely on is what a real client sees.
 */

const group = 'leafbridge.io';
const version = 'v1alpha1';
const namespace = 'default';
const devices = { group, version, namespace, plural: 'devices' };
const configs = { group, version, namespace, plural: 'discoveryconfigs' };
const DEVICES = `/apis/${group}/${version}/namespaces/${namespace}/devices`;

type Obj = {
  metadata: {
    name: string;
    uid: string;
    resourceVersion: string;
    generation: number;
    creationTimestamp: string;
    labels?: Record<string, string>;
    ownerReferences?: unknown[];
    finalizers?: string[];
    deletionTimestamp?: string;
  };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
};

function config(name: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'DiscoveryConfig',
    metadata: { name },
    spec: { handler: { name: 'onvif', details: { interface: 'eth1' } }, ...spec },
  };
}

function device(name: string, labels: Record<string, string> = {}, metadata: Record<string, unknown> = {}) {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'Device',
    metadata: { name, labels, ...metadata },
    spec: {
      id: `urn:uuid:${name}`,
      configName: 'cams',
      handler: 'onvif',
      shared: true,
      nodes: ['edge-1'],
      capacity: 1,
      properties: { ONVIF_IP: '10.0.0.1' },
    },
    status: { online: true },
  };
}

let api: KubeApiServer;
let clients: ReturnType<typeof kubeClients>;

beforeEach(async () => {
  api = await KubeApiServer.start({
    crds: crdManifests(builtinHandlers),
    bookmarkIntervalMs: 50,
    gcDelayMs: 10,
  });
  clients = kubeClients(api);
});
afterEach(async () => {
  await api.close();
});

describe('objects: create, get, list', () => {
  it('create answers 201 with server-set metadata and drops status (status subresource); a second create is 409 AlreadyExists', async () => {
    const res = await clients.custom.createNamespacedCustomObjectWithHttpInfo({
      ...devices,
      body: device('cam-1'),
    });
    expect(res.httpStatusCode).toBe(201);
    const created = res.data as Obj;
    expect(created.metadata).toMatchObject({ name: 'cam-1', namespace, generation: 1 });
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Number(created.metadata.resourceVersion)).toBeGreaterThan(0);
    expect(created.status).toBeUndefined();
    expect(created.spec).toMatchObject({ deviceNodes: [], mounts: [] }); // schema defaults

    const got = (await clients.custom.getNamespacedCustomObject({ ...devices, name: 'cam-1' })) as Obj;
    expect(got).toEqual(created);

    const err = await failure(
      clients.custom.createNamespacedCustomObject({ ...devices, body: device('cam-1') }),
    );
    expect(statusOf(err)).toMatchObject({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'AlreadyExists',
      code: 409,
      details: { name: 'cam-1', group, kind: 'devices' },
    });
    const missing = await failure(clients.custom.getNamespacedCustomObject({ ...devices, name: 'nope' }));
    expect(statusOf(missing)).toMatchObject({
      reason: 'NotFound',
      code: 404,
      message: 'devices.leafbridge.io "nope" not found',
    });
  });

  it('list carries the collection resourceVersion; limit and continue page through it; an expired continue is 410', async () => {
    for (const n of ['d-1', 'd-2', 'd-3', 'd-4', 'd-5'])
      await clients.custom.createNamespacedCustomObject({ ...devices, body: device(n) });
    const all = (await clients.custom.listNamespacedCustomObject(devices)) as {
      kind: string;
      metadata: { resourceVersion: string };
      items: Obj[];
    };
    expect(all.kind).toBe('DeviceList');
    expect(all.metadata.resourceVersion).toBe(String(api.store.currentRv));
    expect(all.items.map((d) => d.metadata.name)).toEqual(['d-1', 'd-2', 'd-3', 'd-4', 'd-5']);

    const names: string[] = [];
    let token: string | undefined;
    do {
      const page = (await clients.custom.listNamespacedCustomObject({
        ...devices,
        limit: 2,
        ...(token ? { _continue: token } : {}),
      })) as {
        metadata: { continue?: string };
        items: Obj[];
      };
      names.push(...page.items.map((d) => d.metadata.name));
      token = page.metadata.continue;
      if (names.length === 2)
        await clients.custom.createNamespacedCustomObject({ ...devices, body: device('d-0') }); // not in the snapshot
    } while (token);
    expect(names).toEqual(['d-1', 'd-2', 'd-3', 'd-4', 'd-5']);

    const first = (await clients.custom.listNamespacedCustomObject({ ...devices, limit: 2 })) as {
      metadata: { continue: string };
    };
    await clients.custom.deleteNamespacedCustomObject({ ...devices, name: 'd-0' });
    api.compact();
    const err = await failure(
      clients.custom.listNamespacedCustomObject({ ...devices, limit: 2, _continue: first.metadata.continue }),
    );
    expect(statusOf(err)).toMatchObject({ code: 410, reason: 'Expired' });
  });

  it('label selectors: equality, inequality, set-based and existence; field selector on metadata.name; a bad selector is 400', async () => {
    await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('a', { config: 'cams', node: 'edge-1' }),
    });
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('b', { config: 'cams' }) });
    await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('c', { config: 'plcs', node: 'edge-2' }),
    });
    const names = async (q: { labelSelector?: string; fieldSelector?: string }) =>
      ((await clients.custom.listNamespacedCustomObject({ ...devices, ...q })) as { items: Obj[] }).items.map(
        (d) => d.metadata.name,
      );
    expect(await names({ labelSelector: 'config=cams' })).toEqual(['a', 'b']);
    expect(await names({ labelSelector: 'config==cams,node=edge-1' })).toEqual(['a']);
    expect(await names({ labelSelector: 'config!=cams' })).toEqual(['c']);
    expect(await names({ labelSelector: 'node!=edge-1' })).toEqual(['b', 'c']); // missing key matches !=
    expect(await names({ labelSelector: 'node in (edge-1, edge-2)' })).toEqual(['a', 'c']);
    expect(await names({ labelSelector: 'node notin (edge-1)' })).toEqual(['b', 'c']);
    expect(await names({ labelSelector: '!node' })).toEqual(['b']);
    expect(await names({ labelSelector: 'node' })).toEqual(['a', 'c']);
    expect(await names({ fieldSelector: 'metadata.name=b' })).toEqual(['b']);
    expect(await names({ fieldSelector: 'metadata.name!=b', labelSelector: 'config=cams' })).toEqual(['a']);
    expect(
      statusOf(
        await failure(clients.custom.listNamespacedCustomObject({ ...devices, labelSelector: 'config=(x' })),
      ),
    ).toMatchObject({ code: 400, reason: 'BadRequest' });
    expect(
      statusOf(
        await failure(clients.custom.listNamespacedCustomObject({ ...devices, fieldSelector: 'spec.id=x' })),
      ),
    ).toMatchObject({ code: 400 });
  });

  it('discovery is enough for the generic KubernetesObjectApi, and built-in kinds work too (pods by spec.nodeName)', async () => {
    const groups = await clients.kc.makeApiClient(ApisApi).getAPIVersions();
    expect(groups.groups.map((g) => g.name)).toContain(group);
    const resources = await clients.custom.getAPIResources({ group, version });
    expect(resources.resources.map((r) => r.name)).toEqual(
      expect.arrayContaining(['devices', 'devices/status', 'discoveryconfigs']),
    );
    expect(resources.resources.find((r) => r.name === 'devices')).toMatchObject({
      kind: 'Device',
      namespaced: true,
      shortNames: ['dev', 'lbdev'],
      categories: ['leafbridge'],
    });

    const generic = KubernetesObjectApi.makeApiClient(clients.kc);
    await generic.create(device('g-1'));
    const read = await generic.read({
      apiVersion: `${group}/${version}`,
      kind: 'Device',
      metadata: { name: 'g-1', namespace },
    });
    expect(read.metadata?.name).toBe('g-1');

    const pod = (name: string, nodeName: string) => ({
      metadata: { name },
      spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
    });
    await clients.core.createNamespacedPod({ namespace, body: pod('broker-1', 'edge-1') });
    await clients.core.createNamespacedPod({ namespace, body: pod('broker-2', 'edge-2') });
    const onEdge2 = await clients.core.listNamespacedPod({
      namespace,
      fieldSelector: 'spec.nodeName=edge-2',
    });
    expect(onEdge2.items.map((p) => p.metadata?.name)).toEqual(['broker-2']);
  });
  it('the generated CRD YAML installs through the API (loadYaml + KubernetesObjectApi), after which its kind is served; a non-structural CRD is 422', async () => {
    const bare = await KubeApiServer.start();
    try {
      const { kc } = kubeClients(bare);
      const generic = KubernetesObjectApi.makeApiClient(kc);
      // loadYaml gives client-node's typed model, which serializes x-kubernetes-* and default back correctly.
      const crd = loadYaml(readFileSync(join(ROOT, 'deploy/crds/leafbridge.io_devices.yaml'), 'utf8'));
      await generic.create(crd as never);
      expect(JSON.stringify(bare.objects('customresourcedefinitions'))).toContain('x-kubernetes-list-type');
      await generic.create(device('cam'));
      expect(bare.objects('devices').map((d) => d.metadata.name)).toEqual(['cam']);

      const broken = structuredClone(crdManifests(builtinHandlers)[0]!) as {
        metadata: { name: string };
        spec: {
          names: { plural: string };
          versions: { schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }[];
        };
      };
      broken.metadata.name = 'others.leafbridge.io';
      broken.spec.names.plural = 'others';
      broken.spec.versions[0]!.schema.openAPIV3Schema.properties.spec = {
        type: 'object',
        properties: { a: {} },
      };
      const res = await fetch(`${bare.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(broken),
      });
      expect(res.status).toBe(422);
      expect(await res.text()).toContain('must not be empty for specified object fields');
    } finally {
      await bare.close();
    }
  });
});

describe('built-in kinds: the real validation that the controller’s objects meet', () => {
  const REQUIRED = 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution';
  const ONE_VALUE =
    "Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector";
  const byName = (...values: string[]) => ({
    matchFields: [{ key: 'metadata.name', operator: 'In', values }],
  });
  const podSpec = (terms: object[]) => ({
    containers: [{ name: 'c', image: 'busybox' }],
    affinity: {
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } },
    },
  });
  const pod = (name: string, terms: object[]) =>
    clients.core.createNamespacedPod({ namespace, body: { metadata: { name }, spec: podSpec(terms) } });
  const service = (name: string) =>
    clients.core.createNamespacedService({
      namespace,
      body: { metadata: { name }, spec: { ports: [{ port: 80 }] } },
    });

  it('a node field selector requirement takes exactly one value: two nodes in one term are 422 (Pods and Jobs), a term per node is fine', async () => {
    const two = statusOf(await failure(pod('two', [byName('n1', 'n2')])));
    expect(two).toMatchObject({ code: 422, reason: 'Invalid', details: { kind: 'Pod', name: 'two' } });
    expect(two.message).toBe(
      `Pod "two" is invalid: ${REQUIRED}.nodeSelectorTerms[0].matchFields[0].values: ${ONE_VALUE}`,
    );
    expect(two.details?.causes).toEqual([
      {
        reason: 'FieldValueRequired',
        field: `${REQUIRED}.nodeSelectorTerms[0].matchFields[0].values`,
        message: ONE_VALUE,
      },
    ]);

    const batch = clients.kc.makeApiClient(BatchV1Api);
    const job = statusOf(
      await failure(
        batch.createNamespacedJob({
          namespace,
          body: {
            metadata: { name: 'flash' },
            spec: { template: { spec: { restartPolicy: 'Never', ...podSpec([byName('n1'), byName()]) } } },
          },
        }),
      ),
    );
    expect(job.message).toBe(
      `Job.batch "flash" is invalid: spec.template.${REQUIRED}.nodeSelectorTerms[1].matchFields[0].values: ${ONE_VALUE}`,
    );

    await pod('per-node', [byName('n1'), byName('n2')]);
    expect(api.object('pods', namespace, 'per-node')).toBeDefined();

    // The other rules of the same validation: a term is needed; the key, operator and value formats.
    const none = statusOf(await failure(pod('none', [])));
    expect(none.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      `${REQUIRED}.nodeSelectorTerms: Required value: must have at least one node selector term`,
    ]);
    const odd = statusOf(
      await failure(
        pod('odd', [
          {
            matchExpressions: [{ key: 'arch', operator: 'In', values: [] }],
            matchFields: [{ key: 'metadata.labels', operator: 'Exists' }],
          },
        ]),
      ),
    );
    const at = `${REQUIRED}.nodeSelectorTerms[0]`;
    expect(odd.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      `${at}.matchExpressions[0].values: Required value: must be specified when \`operator\` is 'In' or 'NotIn'`,
      `${at}.matchFields[0].operator: Invalid value: "Exists": not a valid selector operator`,
      `${at}.matchFields[0].key: Invalid value: "metadata.labels": not a valid field selector key`,
    ]);
  });

  it('a Service name is a DNS-1035 label (a leading digit or a dot is 422); other kinds take DNS-1123 subdomains', async () => {
    const digit = statusOf(await failure(service('1cam-svc')));
    expect(digit).toMatchObject({
      code: 422,
      reason: 'Invalid',
      details: { kind: 'Service', name: '1cam-svc' },
    });
    expect(digit.message).toBe(
      `Service "1cam-svc" is invalid: metadata.name: Invalid value: "1cam-svc": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
    );
    expect(statusOf(await failure(service('cams.v1-svc'))).code).toBe(422);
    const long = statusOf(await failure(service(`s${'x'.repeat(63)}`)));
    expect(long.details?.causes?.map((c) => c.message)).toEqual([
      `Invalid value: "s${'x'.repeat(63)}": must be no more than 63 characters`,
    ]);
    await service('s1cam-svc');
    await pod('1cam.v1-pod', [byName('n1')]);
    expect(api.objects('services', namespace).map((s) => s.metadata.name)).toEqual(['s1cam-svc']);
  });
});

describe('updates: resourceVersion, generation, patches, status subresource', () => {
  it('PUT with a stale resourceVersion is 409 Conflict; generation moves with spec only; a no-op PUT writes nothing', async () => {
    const v1 = (await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('cam'),
    })) as Obj;
    const v2 = (await clients.custom.replaceNamespacedCustomObject({
      ...devices,
      name: 'cam',
      body: { ...v1, spec: { ...v1.spec, capacity: 2 } },
    })) as Obj;
    expect(Number(v2.metadata.resourceVersion)).toBeGreaterThan(Number(v1.metadata.resourceVersion));
    expect(v2.metadata.generation).toBe(2);

    const err = await failure(
      clients.custom.replaceNamespacedCustomObject({
        ...devices,
        name: 'cam',
        body: { ...v1, spec: { ...v1.spec, capacity: 3 } },
      }),
    );
    expect(statusOf(err)).toMatchObject({
      code: 409,
      reason: 'Conflict',
      message:
        'Operation cannot be fulfilled on devices.leafbridge.io "cam": the object has been modified; please apply your changes to the latest version and try again',
    });

    const v3 = (await clients.custom.replaceNamespacedCustomObject({
      ...devices,
      name: 'cam',
      body: { ...v2, metadata: { ...v2.metadata, labels: { a: 'b' } } },
    })) as Obj;
    expect(v3.metadata.generation).toBe(2); // metadata is not spec
    const changes = api.changes('devices');
    const same = (await clients.custom.replaceNamespacedCustomObject({
      ...devices,
      name: 'cam',
      body: v3,
    })) as Obj;
    expect(same.metadata.resourceVersion).toBe(v3.metadata.resourceVersion);
    expect(api.changes('devices')).toBe(changes);
    expect(api.writes('devices')).toBe(5); // the no-op is still a request
  });

  it('merge patch merges and deletes with null; a stale resourceVersion in the patch is 409; JSON patch test failures are 422', async () => {
    await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('cam', { a: '1', b: '2' }),
    });
    const patched = (await clients.custom.patchNamespacedCustomObject(
      {
        ...devices,
        name: 'cam',
        body: { metadata: { labels: { a: null, c: '3' } }, spec: { properties: { EXTRA: 'x' } } },
      },
      mergePatch,
    )) as Obj;
    expect(patched.metadata.labels).toEqual({ b: '2', c: '3' });
    expect(patched.spec.properties).toEqual({ ONVIF_IP: '10.0.0.1', EXTRA: 'x' });
    expect(patched.metadata.generation).toBe(2);
    expect(api.requests({ verb: 'patch' })).toHaveLength(1);

    const stale = await failure(
      clients.custom.patchNamespacedCustomObject(
        { ...devices, name: 'cam', body: { metadata: { resourceVersion: '1' }, spec: { capacity: 4 } } },
        mergePatch,
      ),
    );
    expect(statusOf(stale)).toMatchObject({ code: 409, reason: 'Conflict' });

    const viaJsonPatch = (await clients.custom.patchNamespacedCustomObject(
      {
        ...devices,
        name: 'cam',
        body: [{ op: 'replace', path: '/spec/nodes', value: ['edge-1', 'edge-2'] }],
      },
      jsonPatch,
    )) as Obj;
    expect(viaJsonPatch.spec.nodes).toEqual(['edge-1', 'edge-2']);
    const test = await failure(
      clients.custom.patchNamespacedCustomObject(
        { ...devices, name: 'cam', body: [{ op: 'test', path: '/spec/capacity', value: 9 }] },
        jsonPatch,
      ),
    );
    expect(statusOf(test).code).toBe(422);
  });

  it('the status subresource changes only status; the main resource ignores status', async () => {
    const v1 = (await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('cam'),
    })) as Obj;
    const v2 = (await clients.custom.replaceNamespacedCustomObjectStatus({
      ...devices,
      name: 'cam',
      body: {
        ...v1,
        spec: { ...v1.spec, capacity: 9 },
        status: { online: true, lastSeen: '2026-01-01T00:00:00Z' },
      },
    })) as Obj;
    expect(v2.status).toEqual({ online: true, lastSeen: '2026-01-01T00:00:00Z' });
    expect(v2.spec.capacity).toBe(1);
    expect(v2.metadata.generation).toBe(1);

    const v3 = (await clients.custom.patchNamespacedCustomObject(
      { ...devices, name: 'cam', body: { spec: { capacity: 2 }, status: { online: false } } },
      mergePatch,
    )) as Obj;
    expect(v3.status).toEqual(v2.status);
    expect(v3.spec.capacity).toBe(2);

    const v4 = (await clients.custom.patchNamespacedCustomObjectStatus(
      { ...devices, name: 'cam', body: { status: { online: false } } },
      mergePatch,
    )) as Obj;
    expect(v4.status).toMatchObject({ online: false, lastSeen: '2026-01-01T00:00:00Z' });
    expect(api.requests({ subresource: 'status' })).toHaveLength(2);
    const badStatus = await failure(
      clients.custom.patchNamespacedCustomObjectStatus(
        { ...devices, name: 'cam', body: { status: { online: 'yes' } } },
        mergePatch,
      ),
    );
    expect(statusOf(badStatus)).toMatchObject({
      code: 422,
      details: { causes: [{ field: 'status.online', reason: 'FieldValueTypeInvalid' }] },
    });
  });

  it('the CRD schema rejects bad handler details with 422 Invalid, defaults the spec, and prunes (or, strictly, refuses) unknown fields', async () => {
    const created = (await clients.custom.createNamespacedCustomObject({
      ...configs,
      body: config('cams'),
    })) as Obj;
    expect(created.spec).toEqual({
      handler: { name: 'onvif', details: { interface: 'eth1' } },
      capacity: 1,
      properties: {},
    });

    const invalid = async (spec: Record<string, unknown>) =>
      statusOf(
        await failure(clients.custom.createNamespacedCustomObject({ ...configs, body: config('bad', spec) })),
      );
    const noInterface = await invalid({ handler: { name: 'onvif', details: {} } });
    expect(noInterface).toMatchObject({
      code: 422,
      reason: 'Invalid',
      details: { kind: 'DiscoveryConfig', name: 'bad' },
    });
    expect(noInterface.details?.causes).toContainEqual({
      reason: 'FieldValueRequired',
      field: 'spec.handler.details.interface',
      message: 'Required value',
    });
    expect(noInterface.message).toContain('DiscoveryConfig.leafbridge.io "bad" is invalid');
    const wrongType = await invalid({
      handler: { name: 'onvif', details: { interface: 'eth1', probeIntervalMs: 'often' } },
    });
    expect(wrongType.details?.causes?.map((c) => c.field)).toContain('spec.handler.details.probeIntervalMs');
    const foreign = await invalid({ handler: { name: 'mqtt', details: { interface: 'eth1' } } });
    expect(foreign.message).toContain(
      'spec.handler.details.interface: Invalid value: "eth1": must not validate the schema (not)',
    );
    const unknownHandler = await invalid({ handler: { name: 'zigbee', details: {} } });
    expect(unknownHandler.details?.causes).toContainEqual(
      expect.objectContaining({ field: 'spec.handler.name', reason: 'FieldValueNotSupported' }),
    );
    expect((await invalid({ capacity: 0 })).details?.causes?.[0]).toMatchObject({ field: 'spec.capacity' });

    const warned = await clients.custom.createNamespacedCustomObjectWithHttpInfo({
      ...configs,
      body: config('typo', { capcity: 2 }),
    });
    expect(warned.headers.warning).toContain('unknown field \\"spec.capcity\\"');
    expect((warned.data as Obj).spec.capcity).toBeUndefined();
    const strict = await failure(
      clients.custom.createNamespacedCustomObject({
        ...configs,
        body: config('typo2', { capcity: 2 }),
        fieldValidation: 'Strict',
      }),
    );
    expect(statusOf(strict)).toMatchObject({
      code: 400,
      message: 'strict decoding error: unknown field "spec.capcity"',
    });
  });
});

describe('watch', () => {
  it('sees ADDED, MODIFIED and DELETED in order from a resourceVersion, and bookmarks when allowed', async () => {
    const list = (await clients.custom.listNamespacedCustomObject(devices)) as {
      metadata: { resourceVersion: string };
    };
    const w = await watchWith(clients.kc, DEVICES, {
      resourceVersion: list.metadata.resourceVersion,
      allowWatchBookmarks: true,
    });
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('cam') });
    await clients.custom.patchNamespacedCustomObject(
      { ...devices, name: 'cam', body: { spec: { capacity: 2 } } },
      mergePatch,
    );
    await clients.custom.deleteNamespacedCustomObject({ ...devices, name: 'cam' });
    await until(
      () => w.events.some((e) => e.type === 'DELETED') && w.events.some((e) => e.type === 'BOOKMARK'),
      2000,
      'events',
    );
    const changes = w.events.filter((e) => e.type !== 'BOOKMARK');
    expect(changes.map((e) => e.type)).toEqual(['ADDED', 'MODIFIED', 'DELETED']);
    const rvs = changes.map((e) => Number(e.object.metadata?.resourceVersion));
    expect(rvs).toEqual([...rvs].sort((a, b) => a - b));
    const bookmark = w.events.find((e) => e.type === 'BOOKMARK')!;
    expect(bookmark.object).toEqual({
      apiVersion: `${group}/${version}`,
      kind: 'Device',
      metadata: { resourceVersion: expect.any(String) },
    });
    w.stop();
    await until(() => api.openWatches === 0, 2000, 'the server noticing the client left');
  });

  it('bookmarks only when allowed: the kind and metadata.resourceVersion alone, at the resourceVersion other resources moved on', async () => {
    const list = (await clients.custom.listNamespacedCustomObject(devices)) as {
      metadata: { resourceVersion: string };
    };
    const from = { resourceVersion: list.metadata.resourceVersion };
    const plain = await watchWith(clients.kc, DEVICES, from);
    const marked = await watchWith(clients.kc, DEVICES, { ...from, allowWatchBookmarks: true });
    await until(() => api.openWatches === 2, 2000, 'both watches open');
    await clients.custom.createNamespacedCustomObject({ ...configs, body: config('cams') });
    api.sendBookmarks();
    const rv = String(api.store.currentRv);
    await until(
      () => marked.events.some((e) => e.object.metadata?.resourceVersion === rv),
      2000,
      'a bookmark at the moved resourceVersion',
    );
    await new Promise((r) => setTimeout(r, 200)); // past a bookmark interval
    expect(plain.events).toEqual([]);
    for (const e of marked.events) {
      expect(e).toEqual({
        type: 'BOOKMARK',
        object: {
          apiVersion: `${group}/${version}`,
          kind: 'Device',
          metadata: { resourceVersion: expect.any(String) },
        },
      });
    }
    plain.stop();
    marked.stop();
  });

  it('without a resourceVersion starts with the current objects; a label-filtered watch sees objects leave and enter', async () => {
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('a', { node: 'edge-1' }) });
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('b', { node: 'edge-2' }) });
    const w = await watchWith(clients.kc, DEVICES, { labelSelector: 'node=edge-1' });
    await until(() => w.events.length === 1, 2000, 'initial ADDED');
    expect(w.events[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'a' } } });
    await clients.custom.patchNamespacedCustomObject(
      { ...devices, name: 'a', body: { metadata: { labels: { node: 'edge-2' } } } },
      mergePatch,
    );
    await clients.custom.patchNamespacedCustomObject(
      { ...devices, name: 'b', body: { metadata: { labels: { node: 'edge-1' } } } },
      mergePatch,
    );
    await until(() => w.events.length === 3, 2000, 'leave and enter');
    expect(w.events.slice(1).map((e) => [e.type, e.object.metadata?.name])).toEqual([
      ['DELETED', 'a'],
      ['ADDED', 'b'],
    ]);
    w.stop();
  });

  it('a watch from before a compaction gets an ERROR event with a 410 Expired Status, and the stream ends', async () => {
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('a') });
    const list = (await clients.custom.listNamespacedCustomObject(devices)) as {
      metadata: { resourceVersion: string };
    };
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('b') });
    api.compact();
    const w = await watchWith(clients.kc, DEVICES, { resourceVersion: list.metadata.resourceVersion });
    expect(await within(w.ended, 2000, 'the stream ending')).toBeNull();
    expect(w.events).toEqual([
      {
        type: 'ERROR',
        object: expect.objectContaining({
          kind: 'Status',
          status: 'Failure',
          code: 410,
          reason: 'Expired',
          message: expect.stringMatching(/^too old resource version: \d+ \(\d+\)$/),
        }),
      },
    ]);
    // From the compaction point on, watching works again.
    const again = await watchWith(clients.kc, DEVICES, { resourceVersion: String(api.store.currentRv) });
    await clients.custom.deleteNamespacedCustomObject({ ...devices, name: 'a' });
    await until(() => again.events.length === 1, 2000, 'DELETED');
    again.stop();
  });

  it('client-node’s informer recovers from a closed watch and from 410 Gone by re-listing, and ends up with the truth', async () => {
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('a') });
    const informer = makeInformer(
      clients.kc,
      DEVICES,
      () => clients.custom.listNamespacedCustomObject(devices) as never,
    );
    await informer.start();
    await until(() => informer.list().length === 1, 2000, 'first list');
    const lists = api.requests({ verb: 'list' }).length;

    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('b') });
    await until(() => informer.list().length === 2, 2000, 'b through the watch');
    api.closeWatches(); // restart: the informer re-watches from its resourceVersion
    await clients.custom.deleteNamespacedCustomObject({ ...devices, name: 'a' });
    await until(() => informer.list().length === 1, 2000, 'a deleted after the re-watch');
    expect(api.requests({ verb: 'list' }).length).toBe(lists);

    await until(() => api.openWatches === 1, 2000, 'the informer watching again');
    api.closeWatches(); // and, before it re-watches, a change it has not seen, then a compaction:
    api.seed('devices', device('c'));
    api.compact(); // its resourceVersion is now too old: 410, re-list
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('d') });
    await until(() => informer.list().length === 3, 3000, 're-list after 410');
    expect(
      informer
        .list()
        .map((o) => o.metadata?.name)
        .sort(),
    ).toEqual(['b', 'c', 'd']);
    expect(api.requests({ verb: 'list' }).length).toBeGreaterThan(lists);
    await informer.stop();
  });
});

describe('less common reads and writes', () => {
  it('exact reads of an older resourceVersion, sendInitialEvents, watch timeouts, dry runs and deletecollection', async () => {
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('a', { tier: 'x' }) });
    const before = (await clients.custom.listNamespacedCustomObject(devices)) as {
      metadata: { resourceVersion: string };
    };
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('b', { tier: 'x' }) });
    await clients.custom.deleteNamespacedCustomObject({ ...devices, name: 'a' });
    const then = (await clients.custom.listNamespacedCustomObject({
      ...devices,
      resourceVersion: before.metadata.resourceVersion,
      resourceVersionMatch: 'Exact',
    })) as { items: Obj[] };
    expect(then.items.map((d) => d.metadata.name)).toEqual(['a']);

    const w = await watchWith(clients.kc, DEVICES, {
      sendInitialEvents: true,
      resourceVersionMatch: 'NotOlderThan',
      allowWatchBookmarks: true,
      timeoutSeconds: 1,
    });
    expect(await within(w.ended, 3000, 'timeoutSeconds')).toBeNull();
    expect(w.events[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'b' } } });
    expect(w.events[1]).toMatchObject({
      type: 'BOOKMARK',
      object: { metadata: { annotations: { 'k8s.io/initial-events-end': 'true' } } },
    });

    const dry = (await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('c'),
      dryRun: 'All',
    })) as Obj;
    expect(dry.metadata.name).toBe('c');
    expect(api.object('devices', namespace, 'c')).toBeUndefined();

    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('d', { tier: 'y' }) });
    await clients.custom.deleteCollectionNamespacedCustomObject({ ...devices, labelSelector: 'tier=x' });
    expect(api.objects('devices').map((d) => d.metadata.name)).toEqual(['d']);
  });
});

describe('deletion: owner references and finalizers', () => {
  async function owned(ownerName: string) {
    const owner = (await clients.custom.createNamespacedCustomObject({
      ...configs,
      body: config(ownerName),
    })) as Obj;
    const ref = {
      apiVersion: `${group}/${version}`,
      kind: 'DiscoveryConfig',
      name: ownerName,
      uid: owner.metadata.uid,
      controller: true,
    };
    for (const n of ['d-1', 'd-2']) {
      await clients.custom.createNamespacedCustomObject({
        ...devices,
        body: device(`${ownerName}-${n}`, {}, { ownerReferences: [ref] }),
      });
    }
    return { owner, ref };
  }
  const names = () => api.objects('devices').map((d) => d.metadata.name);

  it('deleting an owner deletes its dependents shortly after (background cascade); a CR delete answers a Success Status', async () => {
    await owned('cams');
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('unowned') });
    const answer = await clients.custom.deleteNamespacedCustomObject({ ...configs, name: 'cams' });
    expect(answer).toMatchObject({
      kind: 'Status',
      status: 'Success',
      details: { name: 'cams', kind: 'discoveryconfigs' },
    });
    // The garbage collector works after the answer (20 ms later here); under load the client may see the
    // answer only after that, so the dependents are checked for being gone, not for being there first.
    await until(() => names().length === 1, 2000, 'cascade');
    expect(names()).toEqual(['unowned']);
  });

  it('an owner reference is dangling when the object of that name has another uid (deleted and created again): its dependents are collected', async () => {
    const { ref } = await owned('cams');
    api.remove('discoveryconfigs', namespace, 'cams');
    const again = api.seed('discoveryconfigs', config('cams'));
    await until(() => names().length === 0, 2000, 'the dependents of the old uid collected');
    // One reference by the right uid, one by the old: only the dangling one is dropped.
    const current = { ...ref, uid: again.metadata.uid, controller: false };
    await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('both', {}, { ownerReferences: [ref, current] }),
    });
    await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device('old-only', {}, { ownerReferences: [ref] }),
    });
    await until(() => names().join() === 'both', 2000, 'old-only collected');
    await api.gcSettled();
    expect(api.object('devices', namespace, 'both')?.metadata.ownerReferences).toEqual([current]);
    expect(api.deletions('devices')).toBe(3);
  });

  it('Orphan keeps the dependents and drops the reference; Foreground keeps the owner until its dependents are gone', async () => {
    await owned('orph');
    await clients.custom.deleteNamespacedCustomObject({
      ...configs,
      name: 'orph',
      propagationPolicy: 'Orphan',
    });
    await api.gcSettled();
    expect(names()).toEqual(['orph-d-1', 'orph-d-2']);
    expect(api.object('devices', namespace, 'orph-d-1')?.metadata.ownerReferences).toBeUndefined();

    await owned('fg');
    const deleting = (await clients.custom.deleteNamespacedCustomObject({
      ...configs,
      name: 'fg',
      propagationPolicy: 'Foreground',
    })) as Obj;
    expect(deleting.metadata.deletionTimestamp).toBeDefined();
    expect(deleting.metadata.finalizers).toEqual(['foregroundDeletion']);
    await until(
      () => api.object('discoveryconfigs', namespace, 'fg') === undefined,
      2000,
      'foreground deletion',
    );
    expect(names()).toEqual(['orph-d-1', 'orph-d-2']);
  });

  it('a dependent with another owner left loses only the dangling reference; a finalizer holds an object until it is removed', async () => {
    const { ref: first } = await owned('one');
    const two = (await clients.custom.createNamespacedCustomObject({
      ...configs,
      body: config('two'),
    })) as Obj;
    await clients.custom.createNamespacedCustomObject({
      ...devices,
      body: device(
        'shared',
        {},
        {
          ownerReferences: [first, { ...first, name: 'two', uid: two.metadata.uid, controller: false }],
          finalizers: ['leafbridge.io/cleanup'],
        },
      ),
    });
    await clients.custom.deleteNamespacedCustomObject({ ...configs, name: 'one' });
    await until(() => !names().includes('one-d-1'), 2000, 'cascade');
    const shared = api.object('devices', namespace, 'shared')!;
    expect(shared.metadata.ownerReferences).toEqual([expect.objectContaining({ name: 'two' })]);

    const held = (await clients.custom.deleteNamespacedCustomObject({ ...devices, name: 'shared' })) as Obj;
    expect(held.metadata.deletionTimestamp).toBeDefined();
    expect(names()).toEqual(['shared']);
    const w = await watchWith(clients.kc, DEVICES, { resourceVersion: held.metadata.resourceVersion });
    await clients.custom.patchNamespacedCustomObject(
      { ...devices, name: 'shared', body: { metadata: { finalizers: null } } },
      mergePatch,
    );
    await until(() => w.events.some((e) => e.type === 'DELETED'), 2000, 'DELETED once the finalizer is gone');
    expect(names()).toEqual([]);
    w.stop();
  });
});

describe('failure injection, as the client sees it', () => {
  it('failNext answers 5xx Statuses with Retry-After; slow delays; the request log counts writes per resource', async () => {
    api.failNext(2, 503);
    for (let i = 0; i < 2; i++) {
      const err = await failure(clients.custom.listNamespacedCustomObject(devices));
      expect(statusOf(err)).toMatchObject({ code: 503, reason: 'ServiceUnavailable' });
      expect((err as { headers: Record<string, string> }).headers['retry-after']).toBe('1');
    }
    await clients.custom.listNamespacedCustomObject(devices);
    api.failNext(1, 500, { verb: 'create' });
    await clients.custom.listNamespacedCustomObject(devices);
    expect(
      statusOf(await failure(clients.custom.createNamespacedCustomObject({ ...devices, body: device('x') })))
        .code,
    ).toBe(500);

    api.slow(150);
    const started = Date.now();
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('x') });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    api.slow(0);
    await clients.custom.createNamespacedCustomObject({ ...configs, body: config('cams') });
    expect(api.writes('devices')).toBe(2);
    expect(api.writes('discoveryconfigs')).toBe(1);
    expect(api.requests({ verb: 'create', status: 500 })).toHaveLength(1);
  });

  it('down() refuses connections and cuts watches; up() serves again on the same port with the objects intact', async () => {
    await clients.custom.createNamespacedCustomObject({ ...devices, body: device('cam') });
    const w = await watchWith(clients.kc, DEVICES, { resourceVersion: String(api.store.currentRv) });
    await until(() => api.openWatches === 1, 2000, 'watch open');
    const port = api.port;
    await api.down();
    expect(await within(w.ended, 2000, 'the watch ending')).toBeTruthy();
    const err = await failure(clients.custom.listNamespacedCustomObject(devices));
    expect(String((err as Error).message) + String((err as { code?: string }).code)).toMatch(/ECONNREFUSED/);

    await api.up();
    expect(api.port).toBe(port);
    const list = (await clients.custom.listNamespacedCustomObject(devices)) as { items: Obj[] };
    expect(list.items.map((d) => d.metadata.name)).toEqual(['cam']);
  });

  it('closeWatches() ends streams cleanly: the client’s done callback gets no error', async () => {
    const w = await watchWith(clients.kc, DEVICES, {});
    await until(() => api.openWatches === 1, 2000, 'watch open');
    api.closeWatches();
    expect(await within(w.ended, 2000, 'the watch ending')).toBeNull();
    expect(api.openWatches).toBe(0);
  });
});
