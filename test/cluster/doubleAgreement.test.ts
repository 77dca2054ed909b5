import { afterAll, beforeAll, expect, it } from 'vitest';
import { DoubleBackend, RealBackend } from '../helpers/clusterBackend.js';
import { INSTALL_NS } from '../helpers/controlPlane.js';
import { describeControlPlane } from '../helpers/realCluster.js';

/**
 * The test double must agree with kube-apiserver: the same requests go to both, and each must answer with the
 * same status code, the same reason and, for 422, the same field paths. Requests are the kinds leafbridge
 * makes, good and bad: broker Pods and Services, Devices, conflicts on stale resourceVersions, status
 * writes, deletes of what is gone.
 */

type Answer = { status: number; reason?: string; fields?: string[] };
type Call = { method: string; path: string; body?: unknown; contentType?: string };

const NS = INSTALL_NS;
const pods = `/api/v1/namespaces/${NS}/pods`;
const services = `/api/v1/namespaces/${NS}/services`;
const devices = `/apis/leafbridge.io/v1alpha1/namespaces/${NS}/devices`;
const MERGE = 'application/merge-patch+json';

const pod = (name: string, values: string[][]) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name },
  spec: {
    containers: [{ name: 'broker', image: 'example/broker:1' }],
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: values.map((v) => ({
            matchFields: [{ key: 'metadata.name', operator: 'In', values: v }],
          })),
        },
      },
    },
  },
});

const service = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name },
  spec: { selector: { app: 'x' }, ports: [{ name: 'http', port: 80 }] },
});

const device = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'leafbridge.io/v1alpha1',
  kind: 'Device',
  metadata: { name },
  spec: {
    id: name,
    configName: 'cams',
    handler: 'debug-echo',
    shared: true,
    nodes: ['n1'],
    capacity: 1,
    properties: {},
    ...spec,
  },
});

/** The cases, in order (later ones build on earlier ones); `rv` stands for the last resourceVersion seen. */
const CASES: [string, Call][] = [
  [
    'a pod pinned to one node per term',
    { method: 'POST', path: pods, body: pod('ok-pod', [['n1'], ['n2']]) },
  ],
  [
    'a pod with two nodes in one field requirement',
    { method: 'POST', path: pods, body: pod('bad-pod', [['n1', 'n2']]) },
  ],
  ['a Service named with a letter first', { method: 'POST', path: services, body: service('cams-svc') }],
  [
    'a Service name that is a subdomain, not a label',
    { method: 'POST', path: services, body: service('a.b-svc') },
  ],
  ['a Device', { method: 'POST', path: devices, body: device('cams-0a0b0c') }],
  ['the same Device again', { method: 'POST', path: devices, body: device('cams-0a0b0c') }],
  [
    'a Device whose capacity is a string',
    { method: 'POST', path: devices, body: device('cams-1a1b1c', { capacity: 'two' }) },
  ],
  [
    'a Device without its id',
    { method: 'POST', path: devices, body: { ...device('cams-2a2b2c'), spec: { configName: 'cams' } } },
  ],
  [
    'a status merge patch',
    {
      method: 'PATCH',
      path: `${devices}/cams-0a0b0c/status`,
      body: { status: { online: true } },
      contentType: MERGE,
    },
  ],
  [
    // The store's status write (src/registry/kubeDeviceStore.ts, patchStatus): conditional on the version read.
    'a status merge patch with a stale resourceVersion',
    {
      method: 'PATCH',
      path: `${devices}/cams-0a0b0c/status`,
      body: { metadata: { resourceVersion: '1' }, status: { online: false } },
      contentType: MERGE,
    },
  ],
  [
    'a merge patch with a stale resourceVersion',
    {
      method: 'PATCH',
      path: `${devices}/cams-0a0b0c`,
      body: { metadata: { resourceVersion: '1' }, spec: { capacity: 2 } },
      contentType: MERGE,
    },
  ],
  ['a read of a missing Device', { method: 'GET', path: `${devices}/cams-ffffff` }],
  ['a delete of a missing Device', { method: 'DELETE', path: `${devices}/cams-ffffff` }],
  [
    // The store's delete (src/registry/kubeDeviceStore.ts): exactly the object it decided on.
    'a delete with a stale resourceVersion precondition',
    {
      method: 'DELETE',
      path: `${devices}/cams-0a0b0c`,
      body: { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: '1' } },
    },
  ],
  [
    'a delete with a stale uid precondition',
    {
      method: 'DELETE',
      path: `${devices}/cams-0a0b0c`,
      body: {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        preconditions: { uid: '00000000-0000-0000-0000-000000000000' },
      },
    },
  ],
];

function answer(status: number, body: unknown): Answer {
  const b = (body ?? {}) as { reason?: string; details?: { causes?: { field?: string }[] } };
  const fields = b.details?.causes?.map((c) => c.field ?? '').sort();
  return {
    status,
    ...(status >= 400 ? { reason: b.reason } : {}),
    ...(status === 422 ? { fields } : {}),
  };
}

let real: RealBackend;
let double: DoubleBackend;

describeControlPlane('the test double answers as kube-apiserver does', () => {
  beforeAll(async () => {
    real = await RealBackend.start();
    double = await DoubleBackend.start(INSTALL_NS);
  }, 120_000);
  afterAll(async () => {
    await real?.close();
    await double?.close();
  });

  it('the same answers, case by case', async () => {
    const got: Record<string, { real: Answer; double: Answer }> = {};
    for (const [what, call] of CASES) {
      const r = await real.cp.request(call.method, call.path, call.body, call.contentType);
      // (the double answers on plain HTTP; the same JSON body and content type)
      const res = await fetch(`${double.api.url}${call.path}`, {
        method: call.method,
        headers: { 'content-type': call.contentType ?? 'application/json' },
        ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
      });
      const text = await res.text();
      got[what] = {
        real: answer(r.status, r.body),
        double: answer(res.status, text ? JSON.parse(text) : {}),
      };
    }
    const disagreements = Object.entries(got).filter(
      ([, a]) => JSON.stringify(a.real) !== JSON.stringify(a.double),
    );
    expect(disagreements).toEqual([]);
    // And the cases mean what they say on the real server.
    expect(got['a pod with two nodes in one field requirement']?.real.status).toBe(422);
    expect(got['a merge patch with a stale resourceVersion']?.real.status).toBe(409);
    expect(got['a status merge patch with a stale resourceVersion']?.real.status).toBe(409);
    expect(got['a delete with a stale resourceVersion precondition']?.real.status).toBe(409);
    expect(got['a status merge patch']?.real.status).toBe(200);
  }, 60_000);

  it('one known difference, by version: Service names with a digit first (taken since 1.36, refused before)', async () => {
    // The double reports v1.31 and validates Service names as every release up to 1.35 does (DNS-1035 labels);
    // 1.36 relaxed the rule to DNS-1123 labels (RelaxedServiceNameValidation, locked on in 1.37). The
    // controller's Service names are DNS-1035 labels, valid on both.
    const call: Call = { method: 'POST', path: services, body: service('1cams-svc') };
    expect((await real.cp.request(call.method, call.path, call.body)).status).toBe(201);
    const res = await fetch(`${double.api.url}${call.path}`, {
      method: 'POST',
      body: JSON.stringify(call.body),
    });
    expect(res.status).toBe(422);
  });
});
