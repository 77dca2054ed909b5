import { describe, it } from 'vitest';
import { controlPlaneBin } from './controlPlane.js';

/**
 * `describe` for suites that run against the real control plane. Where this machine has none (no Go
 * toolchain: scripts/test.sh says so), the suite is skipped — unless LEAFBRIDGE_REQUIRE_REAL_K8S=1 (as
 * .ci/run sets), where it fails instead, so CI can never skip it silently.
 */
export function describeControlPlane(name: string, body: () => void): void {
  if (controlPlaneBin()) {
    describe(name, body);
    return;
  }
  if (process.env.LEAFBRIDGE_REQUIRE_REAL_K8S === '1') {
    describe(name, () => {
      it('has the real control plane it requires', () => {
        throw new Error(
          'LEAFBRIDGE_REQUIRE_REAL_K8S=1 but LEAFBRIDGE_CONTROL_PLANE_BIN names no binaries: run scripts/build-control-plane.sh (needs Go >= 1.26)',
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
