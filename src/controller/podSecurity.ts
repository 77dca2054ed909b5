import { POD_SECURITY_LEVELS, type PodSecurityLevel } from '../model/podSecurity.js';
import { asArray, asRecord, type Loose } from './objects.js';

/**
 * Pod Security Admission as the controller applies it to broker Pods: the level a broker spec needs, the
 * fields a `restricted` namespace demands filled in where the spec leaves them out, the namespace of each
 * level, and which DiscoveryConfigs the controller's own options allow a level above `restricted`.
 * Pure functions: no I/O. The API server stays the judge: a spec this reads as `restricted` that the
 * namespace's `enforce` label refuses after all is a 403, which the config's status shows.
 */

const rank = (level: PodSecurityLevel) => POD_SECURITY_LEVELS.indexOf(level);

/** The controller's own rule: the level allowed per DiscoveryConfig (`namespace/name`), `restricted` unless listed. */
export class PodSecurityAllowance {
  private readonly levels = new Map<string, PodSecurityLevel>();

  /** From `LEVEL=NAMESPACE/NAME` items (the `--allow-pod-security` flag); every bad item in one Error. */
  static parse(items: readonly string[]): PodSecurityAllowance {
    const out = new PodSecurityAllowance();
    const problems: string[] = [];
    for (const item of items) {
      const m = /^(baseline|privileged)=([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(item);
      if (!m) problems.push(`"${item}": expected baseline=NAMESPACE/NAME or privileged=NAMESPACE/NAME`);
      else out.allow(`${m[2]}/${m[3]}`, m[1] as PodSecurityLevel);
    }
    if (problems.length > 0) throw new Error(`--allow-pod-security: ${problems.join('; ')}`);
    return out;
  }

  allow(config: string, level: PodSecurityLevel): void {
    const old = this.levels.get(config);
    if (!old || rank(level) > rank(old)) this.levels.set(config, level);
  }

  of(namespace: string, name: string): PodSecurityLevel {
    return this.levels.get(`${namespace}/${name}`) ?? 'restricted';
  }

  /**
   * The levels some config is allowed, and `restricted`, in order: the broker namespaces to watch (only
   * those: an admin makes a higher level's namespace when allowing that level, not before).
   */
  levelsInUse(): PodSecurityLevel[] {
    const used = new Set<PodSecurityLevel>(['restricted', ...this.levels.values()]);
    return POD_SECURITY_LEVELS.filter((l) => used.has(l));
  }
}

export interface LevelNeeded {
  level: PodSecurityLevel;
  /** The fields that need it (empty for `restricted`). */
  reasons: string[];
}

/** What the baseline level lets a container add (the kernel's default set for containers). */
const BASELINE_CAPABILITIES = new Set([
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
]);
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);
const RESTRICTED_VOLUMES = [
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
];
const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;

/**
 * The lowest level whose checks `spec` (a Pod spec) passes once the restricted defaults are filled in, by
 * the fields it sets itself: the Pod Security Standards' checks, those of baseline (privileged needed) and
 * those of restricted that an explicit setting fails (baseline needed). A field left out is never a reason.
 */
export function levelNeeded(spec: Loose, path: string): LevelNeeded {
  const privileged: string[] = [];
  const baseline: string[] = [];
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC'] as const)
    if (spec[field] === true) privileged.push(`${path}.${field}`);
  asArray(spec.volumes).forEach((v, i) => {
    const volume = asRecord(v) ?? {};
    const type = Object.keys(volume).find((k) => k !== 'name');
    if (type === 'hostPath') privileged.push(`${path}.volumes[${i}].hostPath`);
    else if (type && !RESTRICTED_VOLUMES.includes(type)) baseline.push(`${path}.volumes[${i}].${type}`);
  });
  const podContext = asRecord(spec.securityContext) ?? {};
  securityContextNeeds(podContext, `${path}.securityContext`, privileged, baseline);
  asArray(podContext.sysctls).forEach((s, i) => {
    const name = asRecord(s)?.name;
    if (typeof name !== 'string' || !SAFE_SYSCTLS.has(name))
      privileged.push(`${path}.securityContext.sysctls[${i}]`);
  });
  for (const list of CONTAINER_LISTS) {
    asArray(spec[list]).forEach((c, i) => {
      const container = asRecord(c) ?? {};
      const at = `${path}.${list}[${i}]`;
      asArray(container.ports).forEach((p, j) => {
        const hostPort = asRecord(p)?.hostPort;
        if (typeof hostPort === 'number' && hostPort !== 0) privileged.push(`${at}.ports[${j}].hostPort`);
      });
      const context = asRecord(container.securityContext) ?? {};
      const ctxPath = `${at}.securityContext`;
      securityContextNeeds(context, ctxPath, privileged, baseline);
      if (context.privileged === true) privileged.push(`${ctxPath}.privileged`);
      if (context.allowPrivilegeEscalation === true) baseline.push(`${ctxPath}.allowPrivilegeEscalation`);
      if (context.procMount !== undefined && context.procMount !== 'Default')
        privileged.push(`${ctxPath}.procMount`);
      const caps = asRecord(context.capabilities) ?? {};
      const added = asArray(caps.add).map(String);
      if (added.some((a) => !BASELINE_CAPABILITIES.has(a))) privileged.push(`${ctxPath}.capabilities.add`);
      else if (added.some((a) => a !== 'NET_BIND_SERVICE')) baseline.push(`${ctxPath}.capabilities.add`);
      if (caps.drop !== undefined && !asArray(caps.drop).includes('ALL'))
        baseline.push(`${ctxPath}.capabilities.drop`);
    });
  }
  if (privileged.length > 0) return { level: 'privileged', reasons: privileged };
  if (baseline.length > 0) return { level: 'baseline', reasons: baseline };
  return { level: 'restricted', reasons: [] };
}

/** The checks a pod's or a container's securityContext shares. */
function securityContextNeeds(context: Loose, path: string, privileged: string[], baseline: string[]): void {
  const seccomp = asRecord(context.seccompProfile)?.type;
  if (seccomp === 'Unconfined') privileged.push(`${path}.seccompProfile`);
  const appArmor = asRecord(context.appArmorProfile)?.type;
  if (appArmor === 'Unconfined') privileged.push(`${path}.appArmorProfile`);
  if (asRecord(context.windowsOptions)?.hostProcess === true) privileged.push(`${path}.windowsOptions`);
  const seLinux = asRecord(context.seLinuxOptions);
  if (seLinux && (seLinux.user !== undefined || seLinux.role !== undefined)) {
    privileged.push(`${path}.seLinuxOptions`);
  } else if (
    seLinux?.type !== undefined &&
    !['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'].includes(
      seLinux.type as string,
    )
  ) {
    privileged.push(`${path}.seLinuxOptions.type`);
  }
  if (context.runAsNonRoot === false) baseline.push(`${path}.runAsNonRoot`);
  if (context.runAsUser === 0) baseline.push(`${path}.runAsUser`);
}

/**
 * `spec` (a Pod spec that needs no more than `restricted`) with what a restricted namespace demands where
 * the spec leaves it out: the pod's `runAsNonRoot: true` and `seccompProfile: RuntimeDefault`, and each
 * container's `allowPrivilegeEscalation: false` and `capabilities.drop: [ALL]`. Set fields are kept.
 */
export function withRestrictedDefaults(spec: Loose): Loose {
  const out = structuredClone(spec);
  const podContext = asRecord(out.securityContext) ?? {};
  out.securityContext = {
    ...podContext,
    ...(podContext.runAsNonRoot === undefined ? { runAsNonRoot: true } : {}),
    ...(podContext.seccompProfile === undefined ? { seccompProfile: { type: 'RuntimeDefault' } } : {}),
  };
  for (const list of CONTAINER_LISTS) {
    if (!Array.isArray(out[list])) continue;
    out[list] = asArray(out[list]).map((c) => {
      const container = asRecord(c);
      if (!container) return c;
      const context = asRecord(container.securityContext) ?? {};
      const caps = asRecord(context.capabilities) ?? {};
      return {
        ...container,
        securityContext: {
          ...context,
          ...(context.allowPrivilegeEscalation === undefined ? { allowPrivilegeEscalation: false } : {}),
          capabilities: { ...caps, ...(caps.drop === undefined ? { drop: ['ALL'] } : {}) },
        },
      };
    });
  }
  return out;
}

export function levelAllows(allowed: PodSecurityLevel, needed: PodSecurityLevel): boolean {
  return rank(needed) <= rank(allowed);
}
