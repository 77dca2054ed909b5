import { describe, it } from 'vitest';
import { controlPlaneBin } from './controlPlane.js';

/**
 * `describe` for suites that run against the real control plane. Where this machine has none (no Go
 * toolchain: scripts/test.sh says so), the suite is skipped — unless LEAFBRIDGE_REQUIRE_REAL_K8S=1 (as
 * .ci/run sets) or LEAFBRIDGE_CONTROL_PLANE_BIN names a directory without them: then it fails instead, so CI
 * can never skip it silently.
 */
export function describeControlPlane(name: string, body: () => void): void {
  if (controlPlaneBin()) {
    describe(name, body);
    return;
  }
  const named = process.env.LEAFBRIDGE_CONTROL_PLANE_BIN;
  if (process.env.LEAFBRIDGE_REQUIRE_REAL_K8S === '1' || named) {
    describe(name, () => {
      it('has the real control plane it requires', () => {
        throw new Error(
          named
            ? `LEAFBRIDGE_CONTROL_PLANE_BIN=${named} holds no kube-apiserver: run scripts/build-control-plane.sh (needs Go >= 1.26)`
            : 'LEAFBRIDGE_REQUIRE_REAL_K8S=1 but no control-plane binaries: run scripts/build-control-plane.sh (needs Go >= 1.26)',
        );
      });
    });
    return;
  }
  describe.skip(
    `${name} (skipped: no real control plane on this machine, see scripts/build-control-plane.sh)`,
    body,
  );
}
