import { describe, expect, it } from 'vitest';
import {
  brokerPlan,
  deviceResource,
  injectPodSpec,
  podName,
  renderJob,
  renderPod,
} from '../../../src/controller/brokerSpec.js';
import type { KubeObject } from '../../../src/controller/informer.js';
import { type ConfigView, configView, type DeviceView, deviceView } from '../../../src/controller/objects.js';

function config(spec: Record<string, unknown>): ConfigView {
  return configView({ metadata: { name: 'cams', uid: 'u-config' }, spec }) as ConfigView;
}

const device: DeviceView = deviceView({
  metadata: { name: 'cams-abc123', uid: 'u-device' },
  spec: { configName: 'cams', nodes: ['n1', 'n2'] },
  status: { online: true },
} as KubeObject) as DeviceView;

const containers = [{ name: 'a', image: 'x' }];
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
    const pod = renderPod({ ...device, name: long }, { containers }, 'h', ['n1']);
    expect(pod.metadata.labels?.['leafbridge.io/device']).toHaveLength(63);
    expect(
      Object.keys(
        (pod.spec as { containers: { resources: { limits: object } }[] }).containers[0]?.resources.limits ??
          {},
      ),
    ).toEqual([deviceResource(long)]);
  });

  it('gives a Job’s pods the broker labels and the injection', () => {
    const job = renderJob(device, { backoffLimit: 1, template: { spec: { containers } } }, 'h', ['n2']);
    const template = (
      job.spec as { template: { metadata: { labels: object }; spec: { containers: unknown[] } } }
    ).template;
    expect(template.metadata.labels).toEqual({
      'leafbridge.io/config': 'cams',
      'leafbridge.io/device': 'cams-abc123',
      'leafbridge.io/broker': 'pod',
    });
    expect(template.spec.containers).toEqual([
      { name: 'a', image: 'x', resources: { limits: { 'leafbridge.io/cams-abc123': '1' } } },
    ]);
    expect(job.metadata.ownerReferences).toEqual([
      expect.objectContaining({
        kind: 'Device',
        uid: 'u-device',
        controller: true,
        blockOwnerDeletion: true,
      }),
    ]);
  });
});
