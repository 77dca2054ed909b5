/**
 * The `onvif` npm client's WS-Discovery against camera stubs, in one process. Run only inside a network
 * namespace of its own (`unshare -rn`, loopback up): the client's probe is pinned to nothing but the address
 * it binds (`device: 'lo'` → 127.0.0.1), and there nothing can leave. Prints one JSON line:
 * `{stubs: [uuid…], found: [{urn, hostname, port, path}…], profiles: {urn: [token…]}}`.
 */
import onvif from 'onvif/promises/index.js';
import { startCameraStub } from '../../firmware-stubs/camera/index.js';

const credentials = { username: 'admin', password: 'secret' };
const stubs = await Promise.all(
  [0, 1].map((i) =>
    startCameraStub({
      multicastInterface: '127.0.0.1',
      httpAddress: '127.0.0.1',
      credentials,
      profiles: [{ name: 'main', token: `main_${i}` }],
    }),
  ),
);
try {
  // resolve: false, as the client's own autoconnect would connect without credentials.
  const found = (await onvif.Discovery.probe({ device: 'lo', timeout: 1_500, resolve: false })) as {
    probeMatches: { probeMatch: { endpointReference: { address: string }; XAddrs: string } };
  }[];
  const cams = found.map((f) => {
    const match = f.probeMatches.probeMatch;
    const url = new URL(match.XAddrs.split(' ')[0] ?? '');
    return {
      urn: match.endpointReference.address,
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
    };
  });
  const profiles: Record<string, string[]> = {};
  for (const cam of cams) {
    const client = new onvif.Cam({ ...cam, ...credentials, autoconnect: false });
    await client.connect();
    // The promise wrapper hands out the callback Cam's fields as they are.
    const state = client as unknown as { profiles: { $: { token: string } }[] };
    profiles[cam.urn] = state.profiles.map((p) => p.$.token);
  }
  process.stdout.write(`${JSON.stringify({ stubs: stubs.map((s) => s.uuid), found: cams, profiles })}\n`);
} finally {
  await Promise.all(stubs.map((s) => s.stop()));
}
