/**
 * Debian's onvif-util (libonvif 1.4) reads the camera stub: device information, profiles, stream URIs, and the
 * Profile S settings (video encoder options and configuration, imaging settings and options, network).
 *
 * onvif-util always finds a camera by WS-Discovery first, even when given its address, and sends that
 * probe unpinned with multicast loop off. So it never runs on the host: the test makes a user+network
 * namespace (`unshare -rn`) holding only a veth pair, camera end 10.213.0.1 and client end 10.213.0.2, with
 * the multicast route on the client end. The stub runs in the same namespace (vite-node child). Nothing
 * can leave it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const viteNode = resolve(root, 'node_modules/.bin/vite-node');
const stubMain = resolve(root, 'test/helpers/onvifStubMain.ts');

function missing(): string | undefined {
  if (spawnSync('onvif-util', ['-v']).error)
    return 'onvif-util is not installed (apt-get install onvif-tools)';
  if (
    spawnSync('unshare', ['-rn', 'ip', 'link', 'add', 'name', 'lbt0', 'type', 'veth', 'peer', 'name', 'lbt1'])
      .status !== 0
  ) {
    return 'cannot create a user+network namespace with a veth pair here (unshare -rn, iproute2)';
  }
  if (!existsSync(viteNode)) return 'vite-node is missing from node_modules';
  return undefined;
}
const skipReason = missing();
// CI runs scripts/install-test-deps.sh first (onvif-tools, iproute2): there a missing peer is a failure,
// not a silent skip.
if (skipReason && process.env.CI) throw new Error(`onvif-util interop cannot run in CI: ${skipReason}`);

const stubOptions = {
  multicastInterface: '10.213.0.1',
  httpAddress: '10.213.0.1',
  uuid: 'urn:uuid:0b0e1f00-0000-4000-8000-000000000001',
  manufacturer: 'Leafbridge',
  model: 'Interop Cam',
  serialNumber: 'SN-INTEROP-1',
  credentials: { username: 'admin', password: 'secret' },
  profiles: [
    { name: 'main', token: 'main_token' },
    { name: 'sub', token: 'sub_token' },
  ],
};

const script = `
set -e
ip link set lo up
ip link add lbcam type veth peer name lbcli
ip addr add 10.213.0.1/24 dev lbcam
ip addr add 10.213.0.2/24 dev lbcli
ip link set lbcam up
ip link set lbcli up
ip route add 224.0.0.0/4 dev lbcli
# The probe from 10.213.0.2 arrives on lbcam with a source address of this namespace: accept it.
sysctl -q -w net.ipv4.conf.lbcam.accept_local=1
"$VITE_NODE" "$STUB_MAIN" "$STUB_OPTIONS" > "$STUB_LOG" 2>&1 &
stub=$!
trap 'kill $stub 2>/dev/null || true' EXIT
for i in $(seq 1 100); do grep -q READY "$STUB_LOG" && break; sleep 0.1; done
echo "=== right password"
printf 'get rtsp\\nget rtsp 1\\nget profiles\\nquit\\n' | timeout 10 onvif-util -u admin -p secret 10.213.0.1 || echo "exit $?"
echo "=== settings"
printf 'get video options\\nget video 1\\nget imaging\\nget imaging options\\nget network\\nquit\\n' | timeout 10 onvif-util -u admin -p secret 10.213.0.1 || echo "exit $?"
echo "=== wrong password"
printf 'quit\\n' | timeout 10 onvif-util -u admin -p wrong 10.213.0.1 || echo "exit $?"
kill $stub
wait $stub || true
trap - EXIT
`;

describe('onvif-util reads the camera stub', () => {
  it.skipIf(skipReason !== undefined)(
    `device information, stream URIs, video, imaging and network settings, inside a namespace${skipReason ? ` (skipped: ${skipReason})` : ''}`,
    () => {
      const stubLog = `/tmp/leafbridge-onvif-interop-${process.pid}.log`;
      const run = spawnSync('unshare', ['-rn', 'bash', '-c', script], {
        encoding: 'utf8',
        timeout: 30_000,
        env: {
          ...process.env,
          VITE_NODE: viteNode,
          STUB_MAIN: stubMain,
          STUB_OPTIONS: JSON.stringify(stubOptions),
          STUB_LOG: stubLog,
        },
      });
      rmSync(stubLog, { force: true });
      const [readings = '', wrong = ''] = run.stdout.split('=== wrong password');
      const [right = '', settings = ''] = readings.split('=== settings');
      const context = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
      expect(run.status, context).toBe(0);

      expect(right, context).toContain('found host: 10.213.0.1');
      expect(right, context).toContain('successfully connected to host');
      expect(right, context).toMatch(/name:\s+Interop Cam/);
      expect(right, context).toMatch(/serial:\s+SN-INTEROP-1/);
      expect(right, context).toContain('rtsp://10.213.0.1:8554/main_token');
      expect(right, context).toContain('rtsp://10.213.0.1:8554/sub_token');
      expect(right, context).toMatch(/Token 0: main_token\s+Token 1: sub_token/);

      // Profile S settings: video encoder options and configuration, imaging, network.
      expect(settings, context).not.toContain('ERROR');
      expect(settings, context).toMatch(/Available Resolutions\s+1920 x 1080\s+640 x 360/);
      expect(settings, context).toMatch(/Max Frame Rate: 25/);
      expect(settings, context).toMatch(/Max Bit Rate: \d+/);
      expect(settings, context).toMatch(
        /Resolution: 640 x 360\s+Frame Rate: 25\s+Gov Length: 50\s+Bit Rate:\s+512/,
      );
      expect(settings, context).toMatch(/Brightness: 50\s+Contrast:\s+50\s+Saturation: 50\s+Sharpness:\s+50/);
      expect(settings, context).toMatch(/Min Brightness: 0\s+Max Brightness: 100/);
      expect(settings, context).toMatch(
        /IP Address: 10\.213\.0\.1\s+Gateway:\s+10\.213\.0\.254\s+DNS:\s+10\.213\.0\.254/,
      );

      expect(wrong, context).toContain('found host: 10.213.0.1');
      expect(wrong, context).toContain('ERROR: get device information - ter:NotAuthorized');
      expect(wrong, context).not.toContain('successfully connected');
    },
    40_000,
  );
});
