import { describe, expect, it } from 'vitest';
import {
  type BrokerRender,
  brokerOwnerOf,
  brokerPlan,
  configService,
  configServiceName,
  deviceResource,
  deviceService,
  deviceServiceName,
  injectPodSpec,
  podName,
  renderJob,
  renderPod,
} from '../../../src/controller/brokerSpec.js';
import { type ConfigView, configView, type DeviceView, deviceView } from '../../../src/controller/objects.js';
import type { KubeObject } from '../../../src/kubeclient/informer.js';

function config(spec: Record<string, unknown>): ConfigView {
  return configView({ metadata: { name: 'cams', uid: 'u-config' }, spec }) as ConfigView;
}

const device: DeviceView = deviceView({
  metadata: { name: 'cams-abc123', namespace: 'default', uid: 'u-device' },
  spec: { configName: 'cams', nodes: ['n1', 'n2'] },
  status: { online: true },
} as KubeObject) as DeviceView;

const containers = [{ name: 'a', image: 'x' }];
const render = (template: Record<string, unknown>): BrokerRender => ({
  template,
  hash: 'h',
  security: { level: 'restricted', reasons: [] },
});
const onNode = (node: string) => ({
  matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }],
});
const termsOf = (spec: Record<string, unknown>) =>
  (
    spec as {
      affinity: {
        nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: unknown[] } };
      };
    }
  ).affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms;
/** What the API server takes as a Service name (ValidateServiceName). */
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

describe('brokerPlan (a DiscoveryConfig’s broker fields, untrusted)', () => {
  it('none without broker fields; pod or job otherwise, with a stable hash of the spec', () => {
    expect(brokerPlan(config({})).kind).toBe('none');
    const a = brokerPlan(config({ brokerPodSpec: { containers } }));
    const b = brokerPlan(config({ brokerPodSpec: { containers } }));
    expect(a.kind).toBe('pod');
    expect(a.kind === 'pod' && b.kind === 'pod' && a.hash === b.hash).toBe(true);
    const job = brokerPlan(config({ brokerJobSpec: { template: { spec: { containers } } } }));
    expect(job.kind).toBe('job');
  });

  it.each([
    [{ brokerPodSpec: 'nginx' }, 'spec.brokerPodSpec: must be an object (a Pod spec)'],
    [{ brokerPodSpec: [] }, 'spec.brokerPodSpec: must be an object (a Pod spec)'],
    [{ brokerPodSpec: {} }, 'spec.brokerPodSpec.containers: must list at least one container'],
    [{ brokerPodSpec: { containers: [{ image: 'x' }] } }, 'spec.brokerPodSpec.containers[0].name: required'],
    [
      { brokerPodSpec: { containers, nodeName: 'n1' } },
      'spec.brokerPodSpec.nodeName: must not be set; the controller places the pod on a node that sees the device',
    ],
    [
      { brokerPodSpec: { containers, affinity: { nodeAffinity: 3 } } },
      'spec.brokerPodSpec.affinity: malformed node affinity',
    ],
    [{ brokerJobSpec: { template: 1 } }, 'spec.brokerJobSpec.template: must be an object (a Pod template)'],
    [
      { brokerJobSpec: { selector: {}, template: { spec: { containers } } } },
      'spec.brokerJobSpec.selector: must not be set; the Job controller generates it',
    ],
    [
      { brokerPodSpec: { containers }, brokerJobSpec: { template: { spec: { containers } } } },
      'spec: set brokerPodSpec or brokerJobSpec, not both',
    ],
    [
      { brokerPodSpec: { containers }, deviceService: { ports: [{ port: 80 }, { port: 81 }] } },
      'spec.deviceService.ports[0].name: required when there is more than one port',
    ],
    [
      { brokerPodSpec: { containers }, configService: { ports: [{ port: 0 }] } },
      'spec.configService.ports[0].port: must be an integer from 1 to 65535',
    ],
  ])('refuses %j', (spec, message) => {
    const plan = brokerPlan(config(spec));
    expect(plan.kind).toBe('invalid');
    expect(plan.kind === 'invalid' && plan.message).toContain(message);
  });
});

describe('rendering', () => {
  it('leaves the resource alone when a container already asks for it (any container, limits or requests)', () => {
    const resource = deviceResource('cams-abc123');
    const spec = {
      containers: [
        { name: 'a', image: 'x' },
        { name: 'b', image: 'y', resources: { limits: { [resource]: '1' } } },
      ],
    };
    const out = injectPodSpec(spec, resource, ['n1']) as { containers: { resources?: unknown }[] };
    expect(out.containers[0]?.resources).toBeUndefined();
    expect(out.containers[1]?.resources).toEqual({ limits: { [resource]: '1' } });
  });

  it('ANDs the device’s nodes into every node selector term, and keeps other limits', () => {
    const spec = {
      containers: [{ name: 'a', resources: { limits: { cpu: '1' } } }],
      affinity: {
        podAntiAffinity: { x: 1 },
        nodeAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1 }],
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'a', operator: 'Exists' }] },
              { matchFields: [] },
            ],
          },
        },
      },
    };
    const out = injectPodSpec(spec, 'leafbridge.io/d', ['n1']);
    const ours = { key: 'metadata.name', operator: 'In', values: ['n1'] };
    expect(out.affinity).toEqual({
      podAntiAffinity: { x: 1 },
      nodeAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1 }],
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: 'a', operator: 'Exists' }], matchFields: [ours] },
            { matchFields: [ours] },
          ],
        },
      },
    });
    expect((out.containers as { resources: unknown }[])[0]?.resources).toEqual({
      limits: { cpu: '1', 'leafbridge.io/d': '1' },
    });
    expect(
      spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms,
    ).toHaveLength(2);
  });

  it('allows the pod onto each node through a term of its own: a node field requirement takes one value', () => {
    const out = injectPodSpec({ containers }, 'leafbridge.io/d', ['n1', 'n2', 'n3']);
    expect(termsOf(out)).toEqual([onNode('n1'), onNode('n2'), onNode('n3')]);
    for (const term of termsOf(out) as { matchFields: { values: string[] }[] }[])
      for (const requirement of term.matchFields) expect(requirement.values).toHaveLength(1);
  });

  it('combines each of the config’s terms with each node (terms are ORed, requirements in a term ANDed)', () => {
    const arm = { matchExpressions: [{ key: 'arch', operator: 'In', values: ['arm64'] }] };
    const notN3 = { matchFields: [{ key: 'metadata.name', operator: 'NotIn', values: ['n3'] }] };
    const spec = {
      containers,
      affinity: {
        nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [arm, notN3] } },
      },
    };
    const out = injectPodSpec(spec, 'leafbridge.io/d', ['n1', 'n2']);
    const both = (node: string) => [...notN3.matchFields, ...onNode(node).matchFields];
    expect(termsOf(out)).toEqual([
      { ...arm, ...onNode('n1') },
      { ...arm, ...onNode('n2') },
      { matchFields: both('n1') },
      { matchFields: both('n2') },
    ]);
  });

  it('keeps names and label values within 63 characters', () => {
    const long = `cams-${'x'.repeat(70)}`;
    expect(podName(long)).toHaveLength(63);
    expect(podName(long)).not.toBe(podName(`${long}y`));
    const pod = renderPod({ ...device, name: long }, render({ containers }), ['n1'], 'brokers');
    expect(pod.metadata.labels?.['leafbridge.io/device']).toHaveLength(63);
    expect(
      Object.keys(
        (pod.spec as { containers: { resources: { limits: object } }[] }).containers[0]?.resources.limits ??
          {},
      ),
    ).toEqual([deviceResource(long)]);
  });

  it('gives a Job’s pods the broker labels and the injection', () => {
    const job = renderJob(
      device,
      render({ backoffLimit: 1, template: { spec: { containers } } }),
      ['n2'],
      'b',
    );
    const template = (
      job.spec as { template: { metadata: { labels: object }; spec: { containers: unknown[] } } }
    ).template;
    expect(template.metadata.labels).toEqual({
      'leafbridge.io/config': 'cams',
      'leafbridge.io/device': 'cams-abc123',
      'leafbridge.io/broker': 'pod',
      'leafbridge.io/namespace': 'default',
      'leafbridge.io/uid': 'u-device',
    });
    expect(template.spec.containers).toEqual([
      {
        name: 'a',
        image: 'x',
        resources: { limits: { 'leafbridge.io/cams-abc123': '1' } },
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      },
    ]);
    // In the broker namespace, no owner reference can hold: the Device is named by labels instead.
    expect(job.metadata.ownerReferences).toBeUndefined();
    expect(job.metadata.namespace).toBe('b');
    expect(brokerOwnerOf(job)).toEqual({
      kind: 'Device',
      namespace: 'default',
      name: 'cams-abc123',
      uid: 'u-device',
    });
  });
});

describe('Service names (DNS-1035 labels: a letter first, [a-z0-9-], at most 63)', () => {
  it('keeps every name that already was a DNS-1035 label, shortened ones too', () => {
    expect(configServiceName('cams')).toBe('cams-svc');
    expect(deviceServiceName('cams-abc123')).toBe('cams-abc123-svc');
    const long = `cams-${'x'.repeat(70)}`;
    // As made before: the first 54 characters, '-', and 8 hex of a sha256 of the whole name.
    expect(deviceServiceName(long)).toBe(`${`${long}-svc`.slice(0, 54)}-86f210f4`);
  });

  it.each([
    ['1cams', '1cams-abc123'],
    ['9', '9-abc123'],
    ['cams.v1', 'cams.v1-abc123'],
    [`1${'x'.repeat(70)}`, `1${'x'.repeat(70)}-abc123`],
    [`c.${'x'.repeat(70)}`, `c.${'x'.repeat(70)}-abc123`],
  ])('makes a DNS-1035 label of %j and its devices’ names', (config, device) => {
    for (const name of [configServiceName(config), deviceServiceName(device)]) {
      expect(name).toMatch(DNS_1035_LABEL);
      expect(name.length).toBeLessThanOrEqual(63);
    }
    expect(configServiceName(config)).toBe(configServiceName(config));
    expect(deviceServiceName(device)).not.toBe(configServiceName(config));
  });

  it('never gives a repaired name that a valid name has, nor two repaired names one name', () => {
    const repaired = ['1cams', '1cams.x', '1cams-x', 'cams.x', 'cams-x', 's1cams', 'x1cams', 'cams'].map(
      configServiceName,
    );
    expect(new Set(repaired).size).toBe(repaired.length);
    expect(configServiceName('1cams')).not.toBe(configServiceName('s1cams'));
    expect(configServiceName('cams.x')).not.toBe(configServiceName('cams-x'));
    // A name kept as it was ends in -svc; a repaired or shortened one in 8 hex.
    expect(configServiceName('1cams')).toMatch(/-[0-9a-f]{8}$/);
  });

  it('renders the Services under those names', () => {
    const ports = { ports: [{ port: 80 }] };
    const d = { ...device, name: '1cams-abc123', configName: '1cams' };
    expect(deviceService(d, ports, 'b').metadata.name).toBe(deviceServiceName('1cams-abc123'));
    const c = configView({ metadata: { name: '1cams', uid: 'u' }, spec: {} }) as ConfigView;
    expect(configService(c, ports, 'b').metadata.name).toBe(configServiceName('1cams'));
    expect(configService(c, ports, 'b').metadata.labels?.['leafbridge.io/config']).toBe('1cams');
  });
});
