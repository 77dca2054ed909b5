import { describe, expect, it } from 'vitest';
import {
  levelNeeded,
  PodSecurityAllowance,
  withRestrictedDefaults,
} from '../../../src/controller/podSecurity.js';

const container = (securityContext?: Record<string, unknown>) => ({
  name: 'b',
  image: 'x',
  ...(securityContext ? { securityContext } : {}),
});

describe('the Pod Security level a broker spec needs', () => {
  it('a plain spec needs restricted: the fields it leaves out are no reason', () => {
    expect(levelNeeded({ containers: [container()] }, 'spec')).toEqual({ level: 'restricted', reasons: [] });
  });

  it.each([
    [{ containers: [container({ privileged: true })] }, 'spec.containers[0].securityContext.privileged'],
    [{ hostNetwork: true, containers: [container()] }, 'spec.hostNetwork'],
    [
      { containers: [container()], volumes: [{ name: 'd', hostPath: { path: '/dev' } }] },
      'spec.volumes[0].hostPath',
    ],
    [
      { containers: [container({ capabilities: { add: ['SYS_ADMIN'] } })] },
      'spec.containers[0].securityContext.capabilities.add',
    ],
    [
      { containers: [{ ...container(), ports: [{ containerPort: 1, hostPort: 1883 }] }] },
      'spec.containers[0].ports[0].hostPort',
    ],
  ])('privileged for %j', (spec, reason) => {
    expect(levelNeeded(spec, 'spec')).toEqual({ level: 'privileged', reasons: [reason] });
  });

  it.each([
    [{ containers: [container({ runAsNonRoot: false })] }, 'spec.containers[0].securityContext.runAsNonRoot'],
    [{ securityContext: { runAsUser: 0 }, containers: [container()] }, 'spec.securityContext.runAsUser'],
    [
      { containers: [container({ allowPrivilegeEscalation: true })] },
      'spec.containers[0].securityContext.allowPrivilegeEscalation',
    ],
    [
      { containers: [container({ capabilities: { drop: ['NET_RAW'] } })] },
      'spec.containers[0].securityContext.capabilities.drop',
    ],
    [
      { containers: [container()], volumes: [{ name: 'n', nfs: { server: 's', path: '/' } }] },
      'spec.volumes[0].nfs',
    ],
  ])('baseline for %j', (spec, reason) => {
    expect(levelNeeded(spec, 'spec')).toEqual({ level: 'baseline', reasons: [reason] });
  });
});

describe('the restricted defaults', () => {
  it('fills in what restricted demands where the spec leaves it out, and keeps what it sets', () => {
    const out = withRestrictedDefaults({
      securityContext: { runAsUser: 1000, seccompProfile: { type: 'Localhost', localhostProfile: 'p.json' } },
      initContainers: [container({ capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] } })],
      containers: [container(), container({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true })],
    });
    expect(out.securityContext).toEqual({
      runAsUser: 1000,
      runAsNonRoot: true,
      seccompProfile: { type: 'Localhost', localhostProfile: 'p.json' },
    });
    expect(out.initContainers).toEqual([
      container({
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] },
      }),
    ]);
    expect(out.containers).toEqual([
      container({ allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } }),
      container({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      }),
    ]);
    expect(levelNeeded(out, 'spec').level).toBe('restricted');
  });
});

describe('the controller’s allowance', () => {
  it('allows a level per config by namespace/name, restricted for every other', () => {
    const a = PodSecurityAllowance.parse(['baseline=edge/cams', 'privileged=edge/plc', 'baseline=edge/plc']);
    expect(a.of('edge', 'cams')).toBe('baseline');
    expect(a.of('edge', 'plc')).toBe('privileged'); // the higher of the two
    expect(a.of('other', 'plc')).toBe('restricted');
    expect(a.levelsInUse()).toEqual(['restricted', 'baseline', 'privileged']);
    expect(PodSecurityAllowance.parse([]).levelsInUse()).toEqual(['restricted']);
    // Only the namespaces of levels allowed are watched: none of baseline for a privileged allowance alone.
    expect(PodSecurityAllowance.parse(['privileged=edge/plc']).levelsInUse()).toEqual([
      'restricted',
      'privileged',
    ]);
  });

  it('refuses items it cannot read, all of them at once', () => {
    expect(() => PodSecurityAllowance.parse(['privileged=cams', 'restricted=a/b', 'baseline=A/b'])).toThrow(
      /"privileged=cams".*"restricted=a\/b".*"baseline=A\/b"/,
    );
  });
});
