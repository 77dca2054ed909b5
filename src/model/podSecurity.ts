/**
 * Pod Security Admission's levels, as the controller and the install name them: the broker namespaces (one
 * per level) and the labels that make the API server enforce a level there.
 */

export const POD_SECURITY_LEVELS = ['restricted', 'baseline', 'privileged'] as const;
export type PodSecurityLevel = (typeof POD_SECURITY_LEVELS)[number];

export const DEFAULT_BROKER_NAMESPACE = 'leafbridge-brokers';

/** The namespace of the brokers of `level`: `base` itself for `restricted`, `base-LEVEL` otherwise. */
export function brokerNamespace(base: string, level: PodSecurityLevel): string {
  return level === 'restricted' ? base : `${base}-${level}`;
}

/** The labels of a namespace that enforces `level` (and warns and audits at it). */
export function podSecurityLabels(level: PodSecurityLevel): Record<string, string> {
  return {
    'pod-security.kubernetes.io/enforce': level,
    'pod-security.kubernetes.io/enforce-version': 'latest',
    'pod-security.kubernetes.io/audit': level,
    'pod-security.kubernetes.io/warn': level,
  };
}
