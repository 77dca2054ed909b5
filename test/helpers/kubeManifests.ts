import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';
import type { KubeManifest } from '../../src/install/manifests.js';

/** The kubernetes-models class of each kind the install has: validate() checks an object against the real schema. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};

/** Schema problems of one object ('' when valid); an unknown kind is a problem too. */
export function modelProblems(o: KubeManifest): string {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) return `${o.apiVersion}/${o.kind}: no model to validate it with`;
  try {
    new Model(structuredClone(o) as never).validate();
    return '';
  } catch (err) {
    return `${o.kind} ${o.metadata.name}: ${(err as Error).message}`;
  }
}

/** The documents of a multi-document YAML text (empty documents, e.g. before a leading `---`, dropped). */
export function yamlObjects(text: string): KubeManifest[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join('\n'));
      return d.toJS() as KubeManifest | null;
    })
    .filter((o): o is KubeManifest => o !== null);
}

export const objectKey = (o: KubeManifest) =>
  `${o.kind}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

/** Objects by key, for comparing two renderings whatever their order. */
export function byKey(objects: readonly KubeManifest[]): Record<string, KubeManifest> {
  return Object.fromEntries(objects.map((o) => [objectKey(o), o]));
}

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
}

/** A request as RBAC sees it: the API group ('' for core), `resource` or `resource/subresource`, the verb. */
export interface RbacRequest {
  group: string;
  resource: string;
  verb: string;
  namespace?: string;
}

/**
 * Whether a ServiceAccount's Roles (which apply in their own namespace) and ClusterRoles (everywhere) allow a
 * request, as the RBAC authorizer decides it for resource requests: any rule matching group, resource, verb.
 */
export function rbacAllows(objects: readonly KubeManifest[], account: string, r: RbacRequest): boolean {
  const bound = (kind: 'RoleBinding' | 'ClusterRoleBinding') =>
    objects.filter(
      (o) =>
        o.kind === kind &&
        (o.subjects as { kind: string; name: string }[]).some(
          (s) => s.kind === 'ServiceAccount' && s.name === account,
        ),
    );
  const roles = [
    ...bound('RoleBinding').map((b) => ({ binding: b, kind: 'Role' })),
    ...bound('ClusterRoleBinding').map((b) => ({ binding: b, kind: 'ClusterRole' })),
  ];
  return roles.some(({ binding, kind }) => {
    const ref = binding.roleRef as { kind: string; name: string };
    const role = objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name);
    if (!role || ref.kind !== kind) return false;
    if (binding.kind === 'RoleBinding' && binding.metadata.namespace !== r.namespace) return false;
    return (role.rules as Rule[]).some(
      (rule) =>
        (rule.apiGroups ?? []).some((g) => g === '*' || g === r.group) &&
        (rule.resources ?? []).some((res) => res === '*' || res === r.resource) &&
        rule.verbs.some((v) => v === '*' || v === r.verb),
    );
  });
}

/** Every (group, resource, verb) a ServiceAccount's roles grant, as `group/resource verb` ('' group: `/pods list`). */
export function grantedTriples(objects: readonly KubeManifest[], account: string): string[] {
  const names = objects
    .filter(
      (o) =>
        (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') &&
        (o.subjects as { name: string }[]).some((s) => s.name === account),
    )
    .map((b) => b.roleRef as { kind: string; name: string });
  const out = new Set<string>();
  for (const ref of names) {
    const role = objects.find((o) => o.kind === ref.kind && o.metadata.name === ref.name);
    for (const rule of (role?.rules ?? []) as Rule[])
      for (const g of rule.apiGroups ?? [])
        for (const res of rule.resources ?? []) for (const v of rule.verbs) out.add(`${g}/${res} ${v}`);
  }
  return [...out].sort();
}
