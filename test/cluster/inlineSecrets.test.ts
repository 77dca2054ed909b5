import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ControlPlane } from '../helpers/controlPlane.js';
import { ROOT } from '../helpers/processes.js';
import { describeControlPlane } from '../helpers/realCluster.js';

/**
 * Issue 14 point 3 on the real API server: the DiscoveryConfig CRD (deploy/crds/, generated) refuses an inline
 * password wherever a handler's details have one (its CEL rule), with a message naming the `passwordSecretRef`
 * to give instead, and without echoing the value; a reference to a Secret is accepted.
 */

const NS = 'lb-secrets';
const PLANTED = 'pl4nted-inline-s3cret';
const config = (name: string, handler: string, details: unknown) =>
  stringify({
    apiVersion: 'leafbridge.io/v1alpha1',
    kind: 'DiscoveryConfig',
    metadata: { name, namespace: NS },
    spec: { handler: { name: handler, details } },
  });
const ref = { name: 'cams', key: 'password' };
const REFUSAL = /an inline password is refused; give passwordSecretRef: \{name, key\}/;

let cp: ControlPlane | undefined;

describeControlPlane('inline passwords in DiscoveryConfigs, on the real API server', () => {
  beforeAll(async () => {
    cp = await ControlPlane.start();
    await cp.kubectl(['apply', '-k', join(ROOT, 'deploy/crds')]);
    await cp.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/discoveryconfigs.leafbridge.io',
    ]);
    await cp.kubectl(['create', 'namespace', NS]);
  }, 180_000);
  afterAll(async () => {
    await cp?.close();
    cp = undefined;
  });

  it('kubectl apply is refused for an inline password (mqtt, an ONVIF default and per-camera), accepted with a reference', async () => {
    const kubectl = cp!.kubectl.bind(cp);
    const refused = async (yaml: string, path: RegExp) => {
      const err = await kubectl(['apply', '-f', '-'], yaml).then(
        () => new Error('accepted'),
        (e: Error) => e,
      );
      expect(err.message).toMatch(path);
      expect(err.message).toMatch(REFUSAL);
      expect(err.message).not.toContain(PLANTED);
    };
    await refused(
      config('broker', 'mqtt', { brokerUrl: 'mqtt://10.0.0.5:1883', username: 'lb', password: PLANTED }),
      /spec\.handler\.details\.password: Invalid value: an inline password/,
    );
    await refused(
      config('cams', 'onvif', {
        interface: 'eth1',
        credentials: { default: { username: 'admin', password: PLANTED } },
      }),
      /spec\.handler\.details\.credentials\.default\.password/,
    );
    await refused(
      config('cams', 'onvif', {
        interface: 'eth1',
        credentials: { devices: { 'urn:uuid:1': { username: 'admin', password: PLANTED } } },
      }),
      /spec\.handler\.details\.credentials\.devices\[urn:uuid:1\]\.password/,
    );
    expect(await kubectl(['-n', NS, 'get', 'discoveryconfigs', '-o', 'name'])).toBe('');

    await kubectl(
      ['apply', '-f', '-'],
      config('broker', 'mqtt', { brokerUrl: 'mqtt://10.0.0.5:1883', username: 'lb', passwordSecretRef: ref }),
    );
    await kubectl(
      ['apply', '-f', '-'],
      config('cams', 'onvif', {
        interface: 'eth1',
        credentials: { default: { username: 'admin', passwordSecretRef: ref } },
      }),
    );
    const names = await kubectl(['-n', NS, 'get', 'discoveryconfigs', '-o', 'name']);
    expect(names.trim().split('\n').sort()).toEqual([
      'discoveryconfig.leafbridge.io/broker',
      'discoveryconfig.leafbridge.io/cams',
    ]);
  }, 120_000);
});
