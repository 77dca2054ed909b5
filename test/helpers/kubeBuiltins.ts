import { dns1035LabelErrors, podSpecErrors } from './kubeBuiltinRules.js';
import { isObject, type Schema } from './kubeSchema.js';
import type { ResourceType } from './kubeStore.js';

/** A resource type with the usual defaults filled in. */
export function resourceType(
  t: Pick<ResourceType, 'group' | 'version' | 'plural' | 'kind'> & Partial<ResourceType>,
): ResourceType {
  return {
    singular: t.kind.toLowerCase(),
    namespaced: true,
    shortNames: [],
    categories: [],
    statusSubresource: false,
    custom: false,
    selectableFields: [],
    ...t,
  };
}

/**
 * Built-in kinds later issues need (the controller's broker Pods, Jobs and Services, Nodes, leader-election
 * Leases). They get the generic semantics, without the schemas and defaulting of the real types; of the real
 * validation, what the controller's objects meet (kubeBuiltinRules.ts): Service names, node affinity.
 */
export const BUILTIN_RESOURCES: readonly ResourceType[] = [
  resourceType({
    group: '',
    version: 'v1',
    plural: 'pods',
    kind: 'Pod',
    shortNames: ['po'],
    categories: ['all'],
    statusSubresource: true,
    selectableFields: [
      'spec.nodeName',
      'spec.restartPolicy',
      'spec.schedulerName',
      'spec.serviceAccountName',
      'status.phase',
      'status.podIP',
    ],
    validate: (o) => podSpecErrors(o.spec, 'spec'),
  }),
  resourceType({
    group: '',
    version: 'v1',
    plural: 'services',
    kind: 'Service',
    shortNames: ['svc'],
    categories: ['all'],
    statusSubresource: true,
    nameErrors: dns1035LabelErrors,
  }),
  resourceType({ group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', shortNames: ['cm'] }),
  resourceType({ group: '', version: 'v1', plural: 'secrets', kind: 'Secret', selectableFields: ['type'] }),
  resourceType({
    group: '',
    version: 'v1',
    plural: 'nodes',
    kind: 'Node',
    namespaced: false,
    shortNames: ['no'],
    statusSubresource: true,
  }),
  resourceType({
    group: '',
    version: 'v1',
    plural: 'namespaces',
    kind: 'Namespace',
    namespaced: false,
    shortNames: ['ns'],
    statusSubresource: true,
    selectableFields: ['status.phase'],
  }),
  resourceType({
    group: 'batch',
    version: 'v1',
    plural: 'jobs',
    kind: 'Job',
    categories: ['all'],
    statusSubresource: true,
    validate: (o) =>
      podSpecErrors(
        isObject(o.spec) && isObject(o.spec.template) ? o.spec.template.spec : undefined,
        'spec.template.spec',
      ),
  }),
  resourceType({ group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' }),
  resourceType({
    group: 'apiextensions.k8s.io',
    version: 'v1',
    plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
    shortNames: ['crd', 'crds'],
    categories: ['api-extensions'],
    statusSubresource: true,
  }),
];

/** The parts of a CustomResourceDefinition the test server reads. */
export interface CrdLike {
  spec: {
    group: string;
    names: { kind: string; plural: string; singular?: string; shortNames?: string[]; categories?: string[] };
    scope: 'Namespaced' | 'Cluster';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources?: { status?: object };
      schema?: { openAPIV3Schema?: object };
      selectableFields?: { jsonPath: string }[];
    }[];
  };
}

/** The resource type a CRD defines (its storage version). */
export function crdResourceType(crd: CrdLike): ResourceType {
  const v = crd.spec.versions.find((x) => x.storage) ?? crd.spec.versions[0];
  if (!v) throw new Error(`CRD ${crd.spec.names.plural}.${crd.spec.group} has no versions`);
  const n = crd.spec.names;
  return resourceType({
    group: crd.spec.group,
    version: v.name,
    plural: n.plural,
    kind: n.kind,
    singular: n.singular ?? n.kind.toLowerCase(),
    namespaced: crd.spec.scope === 'Namespaced',
    shortNames: n.shortNames ?? [],
    categories: n.categories ?? [],
    statusSubresource: Boolean(v.subresources?.status),
    custom: true,
    ...(v.schema?.openAPIV3Schema ? { schema: v.schema.openAPIV3Schema as Schema } : {}),
    selectableFields: (v.selectableFields ?? []).map((f) => f.jsonPath.replace(/^\./, '')),
  });
}
