import { describe, expect, it } from 'vitest';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { type InstallOptions, installManifests } from '../../src/install/manifests.js';
import { KubeApiServer } from '../helpers/kubeApiServer.js';
import type { CrdLike } from '../helpers/kubeBuiltins.js';

/** The install's CRDs, as `leafbridge manifests` with these options prints them. */
const crds = (o: Partial<InstallOptions>) =>
  installManifests(builtinHandlers, o).filter(
    (x) => x.kind === 'CustomResourceDefinition',
  ) as unknown as CrdLike[];

const details = { subnet: '10.0.0.0/24', scan: { ports: [502, 1502], slow: true } };

/** POSTs a DiscoveryConfig naming `handler`; the status and the body of the answer. */
async function create(api: KubeApiServer, handler: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${api.url}/apis/leafbridge.io/v1alpha1/namespaces/leafbridge/discoveryconfigs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name: 'sensors', namespace: 'leafbridge' },
      spec: { handler: { name: handler, details } },
    }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.json() };
}

describe('the test API server with the install’s CRDs: a DiscoveryConfig naming an external handler', () => {
  it('is refused (422) without --external-handlers', async () => {
    const api = await KubeApiServer.start({ crds: crds({}) });
    try {
      const { status, body } = await create(api, 'my-sensors');
      expect(status).toBe(422);
      expect(JSON.stringify(body)).toContain('Unsupported value: \\"my-sensors\\"');
      expect(api.objects('discoveryconfigs')).toEqual([]);
    } finally {
      await api.close();
    }
  });

  it('is accepted with it, its free-form details kept whole', async () => {
    const api = await KubeApiServer.start({ crds: crds({ externalHandlers: ['my-sensors'] }) });
    try {
      const { status } = await create(api, 'my-sensors');
      expect(status).toBe(201);
      const [stored] = api.objects('discoveryconfigs') as unknown as { spec: { handler: unknown } }[];
      expect(stored?.spec.handler).toEqual({ name: 'my-sensors', details });
    } finally {
      await api.close();
    }
  });
});
