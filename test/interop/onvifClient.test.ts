/**
 * The `onvif` npm client (the one DESIGN.md names) uses the camera stub as a Profile S device, end to end:
 * connect() with its profiles, video sources and active source; the RTSP stream behind GetStreamUri (read by
 * ffprobe from a GStreamer RTSP server); the JPEG behind GetSnapshotUri (fetched by curl with HTTP Digest);
 * imaging, video-encoder options, network interfaces, default gateway and DNS. Its WS-Discovery runs in a
 * network namespace of its own (test/helpers/onvifClientDiscoveryMain.ts), so its probe cannot leave.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import onvif from 'onvif/promises/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CameraStub, startCameraStub } from '../../firmware-stubs/camera/index.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const PYTHON = '/usr/bin/python3';
const credentials = { username: 'admin', password: 'secret' };

function missing(): string | undefined {
  for (const tool of ['ffprobe', 'curl'])
    if (spawnSync(tool, ['--version']).error) return `${tool} is not installed`;
  const gst = spawnSync(PYTHON, ['-c', "import gi; gi.require_version('GstRtspServer', '1.0')"]);
  if (gst.status !== 0) return 'the GStreamer RTSP server for python3 is not installed';
  if (spawnSync('unshare', ['-rn', 'true']).status !== 0) return 'cannot create a network namespace here';
  return undefined;
}
const skipReason = missing();

/** examples/camera-broker/rtsp_source.py on a free port: the stream behind the stub's stream URIs. */
async function startRtspSource(): Promise<{ child: ChildProcess; port: number }> {
  const script = join(root, 'examples/camera-broker/rtsp_source.py');
  const child = spawn(PYTHON, [script, '--address', '127.0.0.1', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((done, fail) => {
    const timer = setTimeout(() => fail(new Error('the RTSP source did not start within 10 s')), 10_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      const line = /\{.*\}/.exec(chunk.toString())?.[0];
      if (!line) return;
      clearTimeout(timer);
      done((JSON.parse(line) as { port: number }).port);
    });
    child.once('exit', (code) => fail(new Error(`the RTSP source exited (${code})`)));
  });
  return { child, port };
}

// The client's results are untyped (xml2js trees); each test reads the fields it checks.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Loose = Record<string, any>;

describe.skipIf(skipReason !== undefined)(
  `the onvif npm client against the camera stub${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let source: { child: ChildProcess; port: number };
    let camera: CameraStub;
    let cam: Loose;
    const dir = mkdtempSync(join(tmpdir(), 'leafbridge-onvif-client-'));

    beforeAll(async () => {
      source = await startRtspSource();
      camera = await startCameraStub({
        multicastInterface: '127.0.0.1',
        discovery: false,
        credentials,
        rtspBaseUri: `rtsp://127.0.0.1:${source.port}`,
      });
      cam = new onvif.Cam({
        hostname: camera.address,
        port: camera.port,
        ...credentials,
        autoconnect: false,
      }) as Loose;
      await cam.connect();
    }, 30_000);

    afterAll(async () => {
      await camera?.stop();
      source?.child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    });

    it('connect() finds the profiles, the video source and an active source', () => {
      expect(cam.profiles.map((p: Loose) => p.$.token)).toEqual(['profile_main', 'profile_sub']);
      expect([cam.videoSources].flat().map((v: Loose) => v.$.token)).toEqual(['vs0']);
      expect(cam.activeSource).toMatchObject({
        sourceToken: 'vs0',
        profileToken: 'profile_main',
        encoding: 'H264',
        width: 1920,
        height: 1080,
      });
      expect(cam.uri.imaging.href).toBe(`http://${camera.address}:${camera.port}/onvif/imaging_service`);
    });

    it('getStreamUri({protocol: "RTSP"}) gives a URI that ffprobe reads a stream from', async () => {
      const { uri } = (await cam.getStreamUri({ protocol: 'RTSP' })) as { uri: string };
      expect(uri).toBe(`rtsp://127.0.0.1:${source.port}/profile_main`);
      const probe = await run(
        'ffprobe',
        [
          '-v',
          'error',
          '-rtsp_transport',
          'tcp',
          '-show_entries',
          'stream=codec_name,width',
          '-of',
          'json',
          uri,
        ],
        { timeout: 15_000 },
      );
      expect(JSON.parse(probe.stdout).streams[0]).toMatchObject({ codec_name: 'mjpeg', width: 320 });
    }, 20_000);

    it('getSnapshotUri() gives a URI that serves a JPEG with the same credentials (HTTP Digest)', async () => {
      const { uri } = (await cam.getSnapshotUri({ profileToken: 'profile_sub' })) as { uri: string };
      expect(uri).toBe(`http://${camera.address}:${camera.port}/onvif/snapshot?profile=profile_sub`);
      const file = join(dir, 'snapshot.jpg');
      const curl = (...args: string[]) =>
        run('curl', ['-s', '-o', file, '-w', '%{http_code} %{content_type}', ...args, uri], {
          timeout: 10_000,
        });
      expect((await curl()).stdout).toMatch(/^401 /);
      expect((await curl('--digest', '-u', 'admin:wrong')).stdout).toMatch(/^401 /);
      expect((await curl('--digest', '-u', `${credentials.username}:${credentials.password}`)).stdout).toBe(
        '200 image/jpeg',
      );
      expect(readFileSync(file).subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
      const probe = await run(
        'ffprobe',
        ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', file],
        { timeout: 10_000 },
      );
      expect(JSON.parse(probe.stdout).streams[0]).toMatchObject({
        codec_name: 'mjpeg',
        width: 64,
        height: 48,
      });
    }, 20_000);

    it('reads imaging settings, encoder options, network interfaces, default gateway and DNS', async () => {
      expect(await cam.getImagingSettings()).toMatchObject({ brightness: 50, contrast: 50, sharpness: 50 });
      const options = (await cam.getVideoEncoderConfigurationOptions({
        profileToken: 'profile_main',
      })) as Loose;
      expect(JSON.stringify(options)).toContain('"width":1920');
      const interfaces = (await cam.getNetworkInterfaces()) as Loose[];
      expect(interfaces[0]?.$.token).toBe('eth0');
      expect(await cam.getNetworkDefaultGateway()).toMatchObject({ IPv4Address: '127.0.0.254' });
      expect(await cam.getDNS()).toMatchObject({ fromDHCP: false });
      expect(await cam.getDeviceInformation()).toMatchObject({ manufacturer: 'Leafbridge Simulated' });
    });

    it('with a wrong password it reads nothing but the pre-authentication operations', async () => {
      const wrong = new onvif.Cam({
        hostname: camera.address,
        port: camera.port,
        username: 'admin',
        password: 'wrong',
        autoconnect: false,
      }) as Loose;
      await wrong.connect();
      expect(wrong.profiles).toEqual([]);
      await expect(wrong.getDeviceInformation()).rejects.toThrow(/NotAuthorized|not authorized/i);
    });

    it('its Discovery finds two stubs, and connects to each (in a network namespace of its own)', async () => {
      const main = join(root, 'test/helpers/onvifClientDiscoveryMain.ts');
      const viteNode = join(root, 'node_modules/.bin/vite-node');
      const { stdout } = await run(
        'unshare',
        ['-rn', 'bash', '-c', `ip link set lo up && exec "${viteNode}" "${main}"`],
        { cwd: root, timeout: 30_000 },
      );
      const out = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
        stubs: string[];
        found: { urn: string; hostname: string }[];
        profiles: Record<string, string[]>;
      };
      expect(out.found.map((f) => f.urn).sort()).toEqual([...out.stubs].sort());
      expect(out.found.every((f) => f.hostname === '127.0.0.1')).toBe(true);
      expect(Object.values(out.profiles).sort()).toEqual([['main_0'], ['main_1']]);
    }, 40_000);
  },
);
