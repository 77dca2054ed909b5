/**
 * examples/: every DiscoveryConfig is checked the way the API server (the CRD in deploy/crds/), the agent
 * and the controller check one; then each runs for real. The test applies it to an in-process agent (over
 * the agent's API, details pointed at a simulator), lets the handler find the simulated device, renders the
 * broker pod the controller would create, allocates the device at a test kubelet as the kubelet would for
 * that pod, and runs the pod's command (the built example, from dist/) with the pod's environment: the
 * device plugin's envs and the container's own env. The MQTT device example runs as a device against the
 * agent's edge broker, with a twin set from the cloud side.
 *
 * Needs ffmpeg and GStreamer's RTSP server (the camera), socat (serial), mosquitto-clients (the MQTT tap):
 * scripts/install-test-deps.sh.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { Value } from '@sinclair/typebox/value';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type CameraStub, startCameraStub } from '../../firmware-stubs/camera/index.js';
import { type PlcStub, startPlcStub } from '../../firmware-stubs/plc/index.js';
import { type SerialSensorStub, startSerialSensorStub } from '../../firmware-stubs/serial/index.js';
import { builtinHandlers } from '../../src/builtinHandlers.js';
import { DiscoveryConfigEntrySchema } from '../../src/config/schema.js';
import { brokerPlan, renderPod } from '../../src/controller/brokerSpec.js';
import { configView, deviceView, type Loose } from '../../src/controller/objects.js';
import { crdManifests } from '../../src/install/crds.js';
import type { KubeObject } from '../../src/kubeclient/informer.js';
import { discoveryConfigProblems } from '../../src/model/discoveryConfigs.js';
import { externalHandlerSpecs, withExternal } from '../../src/model/externalHandlers.js';
import { API_VERSION, type DeviceObject } from '../../src/model/resources.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { hashPassword } from '../../src/util/password.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { applyDefaults, prune, type Schema, validate } from '../helpers/kubeSchema.js';
import { which } from '../helpers/mosquitto.js';
import { collect, connect, type Received, startInProcessAgent, until } from '../helpers/mqtt.js';
import { ROOT, stopProcess, tempDir, UpstreamBroker, waitForLine } from '../helpers/processes.js';
import { TestKubelet } from '../helpers/testKubelet.js';

const CONFIGS = join(ROOT, 'examples/discoveryconfigs');
/** The name examples/tcp-handler registers under, which tcp-endpoints.yaml names. */
const EXTERNAL = 'tcp-endpoints';
const CRD = join(ROOT, 'deploy/crds/leafbridge.io_discoveryconfigs.yaml');
/** Where the image keeps the build (Dockerfile: WORKDIR /app); here, the repository. */
const IMAGE_ROOT = '/app/';

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: Loose;
}

interface Container {
  name: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: Loose }[];
  resources?: { limits?: Record<string, string> };
}

const example = (file: string): Manifest => parse(readFileSync(join(CONFIGS, file), 'utf8')) as Manifest;
const details = (m: Manifest) => (m.spec.handler as { details: Loose }).details;
type CrdText = { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } };
/**
 * deploy/crds/'s DiscoveryConfig schema; for a config naming the external handler, the one an install with
 * `externalHandlers: [tcp-endpoints]` generates (the install's own generator, which deploy/crds/ is kept to).
 */
function crdSchema(object: Manifest): Schema {
  const external = (object.spec.handler as { name?: string }).name === EXTERNAL;
  const crd = external
    ? (crdManifests(withExternal(builtinHandlers, externalHandlerSpecs([EXTERNAL])))[0] as unknown as CrdText)
    : (parse(readFileSync(CRD, 'utf8')) as CrdText);
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}

/** What the API server says about the object: fields it would prune, then field errors after defaulting. */
function admission(object: Manifest): { pruned: string[]; errors: string[] } {
  const copy = structuredClone(object);
  const schema = crdSchema(object);
  const pruned = prune(schema, copy);
  applyDefaults(schema, copy);
  return { pruned, errors: validate(schema, copy).map((e) => `${e.field}: ${e.message}`) };
}

/** What the agent says: the config entry schema (src/config/schema.ts), then the handler's details schema. */
function agentProblems(object: Manifest): string[] {
  const entry = Value.Default(
    DiscoveryConfigEntrySchema,
    structuredClone({ name: object.metadata.name, spec: object.spec }),
  );
  const schema = [...Value.Errors(DiscoveryConfigEntrySchema, entry)].map((e) => `${e.path}: ${e.message}`);
  if (schema.length > 0) return schema;
  // As an agent whose discovery.external.handlers lists the example external handler's name.
  return discoveryConfigProblems(
    [entry as never],
    withExternal(builtinHandlers, externalHandlerSpecs([EXTERNAL])),
  );
}

// ------------------------------------------------------------------------------------- pods and processes

/** The broker pod the controller makes for `device` (src/controller/brokerSpec.ts), and its first container. */
function brokerContainer(object: Manifest, device: DeviceObject): { container: Container; resource: string } {
  const plan = brokerPlan(configView(object as unknown as KubeObject)!);
  if (plan.kind !== 'pod') throw new Error(`${object.metadata.name}: no broker pod (${plan.kind})`);
  const view = deviceView(device as unknown as KubeObject)!;
  const pod = renderPod(view, plan, device.spec.nodes, 'leafbridge-brokers');
  const container = (pod.spec as { containers: Container[] }).containers[0]!;
  const resource = Object.keys(container.resources?.limits ?? {}).find((k) => k.startsWith('leafbridge.io/'));
  if (!resource) throw new Error('the broker container requests no leafbridge.io resource');
  return { container, resource };
}

/**
 * The container's environment as the kubelet builds it: the device plugin's envs, then the container's env in
 * order (`$(VAR)` expanded), `valueFrom` taken from `given` (stand-ins for Secrets and the downward API; an
 * optional one not given is left out), then the test's `overrides` (ports, directories).
 */
function podEnv(
  container: Container,
  deviceEnvs: Record<string, string>,
  given: Record<string, string>,
  overrides: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = { ...deviceEnvs };
  for (const e of container.env ?? []) {
    const value = e.value ?? given[e.name];
    if (value !== undefined)
      env[e.name] = value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v) => env[v] ?? m);
  }
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, ...overrides };
}

/** The container's command: `node /app/dist/...` runs this Node on the build here; anything else from PATH. */
function commandOf(container: Container): [string, string[]] {
  const argv = [...(container.command ?? []), ...(container.args ?? [])].map((a) =>
    a.startsWith(IMAGE_ROOT) ? join(ROOT, a.slice(IMAGE_ROOT.length)) : a,
  );
  const [command, ...args] = argv;
  if (!command) throw new Error(`container ${container.name} has no command`);
  return [command === 'node' ? process.execPath : command, args];
}

/** A child process whose stdout lines are kept (JSON lines parsed as well), stopped by `stopAll`. */
class Running {
  readonly text: string[] = [];
  readonly json: Record<string, unknown>[] = [];
  readonly stderr: string[] = [];
  readonly child: ChildProcess;
  private static all = new Set<Running>();

  constructor(command: string, args: string[], env: Record<string, string>) {
    this.child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.text.push(line);
      if (line.startsWith('{')) {
        try {
          this.json.push(JSON.parse(line) as Record<string, unknown>);
        } catch {}
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => this.stderr.push(d.toString()));
    Running.all.add(this);
  }

  lines(msg: string): Record<string, unknown>[] {
    return this.json.filter((l) => l.msg === msg);
  }

  async waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
    try {
      await until(() => check() || this.child.exitCode !== null, ms, what);
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\nstdout:\n${this.text.join('\n')}\nstderr:\n${this.stderr.join('')}`,
      );
    }
    if (!check()) throw new Error(`exited (${this.child.exitCode}) before ${what}:\n${this.text.join('\n')}`);
  }

  /** SIGTERM, as the kubelet stops a container; resolves with the exit code (SIGKILL after 10 s). */
  async stop(): Promise<number | null> {
    Running.all.delete(this);
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await stopProcess(this.child);
    clearTimeout(kill);
    return code;
  }

  static async stopAll(): Promise<void> {
    await Promise.all([...Running.all].map((r) => r.stop()));
  }
}

// ----------------------------------------------------------------------------------------------- the agent

/** An in-process agent with a test kubelet; DiscoveryConfigs go in through its API, as `kubectl apply` would. */
async function startEdge(dir: string, extra: Record<string, unknown> = {}, upstreamUrl?: string) {
  const plugins = join(dir, 'device-plugins');
  mkdirSync(plugins, { recursive: true });
  const kubelet = new TestKubelet(plugins);
  await kubelet.start();
  // Every line the agent logs, at debug level: what must never appear there (credentials) is looked for.
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  const edge = await startInProcessAgent(
    agentConfig(join(dir, 'data'), upstreamUrl, { devicePlugins: { dir: plugins }, ...extra }),
    createLogger({ level: 'debug', destination: sink }),
  );
  const apply = async (object: Manifest) => {
    const res = await fetch(`${edge.http}/api/v1/discoveryconfigs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(object),
    });
    expect(res.status, await res.clone().text()).toBe(201);
  };
  const deviceOf = async (config: string, check: (d: DeviceObject) => boolean, ms: number) => {
    let found: DeviceObject | undefined;
    await until(
      () => {
        found = edge.agent.registry.list().find((d) => d.spec.configName === config && check(d));
        return found !== undefined;
      },
      ms,
      `a Device of ${config}`,
    );
    return found!;
  };
  /** Allocate a healthy slot of `resource`, as the kubelet does when it starts the pod. */
  const allocate = async (resource: string) => {
    const slot = await kubelet.waitFor(
      () => kubelet.devices(resource).find((d) => d.health === 'Healthy'),
      5_000,
      `a healthy slot of ${resource}`,
    );
    const response = await kubelet.allocate(resource, [slot.ID]);
    return response.container_responses[0]!;
  };
  const stop = async () => {
    await edge.agent.stop();
    await kubelet.stop();
  };
  return { edge, apply, deviceOf, allocate, stop, logs };
}

type SecretRef = { name: string; key: string };

/** A Secret as the standalone agent reads it (secrets.dir/NAME/KEY, a mounted Secret's layout). */
function writeSecret(dir: string, ref: SecretRef, value: string): { secrets: { dir: string } } {
  const secrets = join(dir, 'secrets');
  mkdirSync(join(secrets, ref.name), { recursive: true });
  writeFileSync(join(secrets, ref.name, ref.key), `${value}\n`, { mode: 0o600 });
  return { secrets: { dir: secrets } };
}

const jpeg = (b: Buffer) =>
  b.subarray(0, 2).toString('hex') === 'ffd8' && b.subarray(-2).toString('hex') === 'ffd9';

// ================================================================================================== tests

describe('examples/discoveryconfigs', () => {
  const files = readdirSync(CONFIGS).filter((f) => f.endsWith('.yaml'));

  it('has one for cameras, PLCs, serial sensors, MQTT devices, Modbus TCP and RTU, an external handler', () => {
    expect(files.sort()).toEqual([
      'cameras.yaml',
      'modbus-meters.yaml',
      'modbus-rtu.yaml',
      'mqtt-devices.yaml',
      'plcs.yaml',
      'serial-sensors.yaml',
      'tcp-endpoints.yaml',
    ]);
    const handlers = files.map((f) => (example(f).spec.handler as { name: string }).name);
    expect(handlers.sort()).toEqual(['modbus', 'modbus', 'mqtt', 'onvif', 'opcua', 'serial', EXTERNAL]);
  });

  it.each(files)('%s passes the CRD schema, the agent’s checks and the controller’s', (file) => {
    const object = example(file);
    expect(object).toMatchObject({ apiVersion: API_VERSION, kind: 'DiscoveryConfig' });
    expect(admission(object)).toEqual({ pruned: [], errors: [] });
    expect(agentProblems(object)).toEqual([]);
    const plan = brokerPlan(configView(object as unknown as KubeObject)!);
    expect(plan.kind, plan.kind === 'invalid' ? plan.message : '').toBe('pod');
    if (object.spec.deviceService) expect(plan).toHaveProperty('deviceService');
    // Every example program a broker runs is in examples/ (built to dist/examples/).
    const containers = (object.spec.brokerPodSpec as { containers: Container[] }).containers;
    for (const c of containers) {
      for (const arg of [...(c.command ?? []), ...(c.args ?? [])].filter((a) => a.includes('/examples/'))) {
        const source = arg.replace(/^\/app\/dist\//, '').replace(/\.js$/, '.ts');
        expect(existsSync(join(ROOT, source)), `${arg} → ${source}`).toBe(true);
      }
    }
  });

  it('a broken example fails them: a missing required detail, a misspelt field', () => {
    const object = example('cameras.yaml');
    delete details(object).interface;
    expect(admission(object).errors).toContain('spec.handler.details.interface: Required value');
    expect(agentProblems(object).join('\n')).toContain('spec.handler.details.interface');
    const typo = example('plcs.yaml');
    typo.spec.brokerPodSpek = typo.spec.brokerPodSpec;
    delete typo.spec.brokerPodSpec;
    expect(admission(typo).pruned).toEqual(['spec.brokerPodSpek']);
    expect(agentProblems(typo).join('\n')).toContain('brokerPodSpek');
  });
});

// ------------------------------------------------------------------------------------------------- camera

const PYTHON = '/usr/bin/python3';
const RTSP_SOURCE = join(ROOT, 'examples/camera-broker/rtsp_source.py');

/** Throws with the fix when a tool the camera example needs is missing. */
function requireCameraTools(): void {
  const missing = ['ffmpeg', 'ffprobe'].filter((t) => !which(t));
  const gst = spawnSync(PYTHON, ['-c', "import gi; gi.require_version('GstRtspServer', '1.0')"]);
  if (gst.status !== 0) missing.push('GStreamer RTSP server for python3');
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(', ')}: run scripts/install-test-deps.sh (apt-get install ffmpeg ` +
        'gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good)',
    );
  }
}

/** examples/camera-broker/rtsp_source.py: the stream the simulated camera's URIs point at. */
async function startRtspSource(port = 0): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(PYTHON, [RTSP_SOURCE, '--address', '127.0.0.1', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const bound = await waitForLine(child, (l) => (typeof l.port === 'number' ? l.port : undefined), 10_000);
  return { child, port: bound };
}

function probe(file: string): Record<string, unknown> {
  const run = spawnSync(
    'ffprobe',
    ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'json', file],
    {
      encoding: 'utf8',
      timeout: 10_000,
    },
  );
  return (JSON.parse(run.stdout) as { streams: Record<string, unknown>[] }).streams[0] ?? {};
}

describe('examples/camera-broker against the simulated camera', () => {
  let dir: ReturnType<typeof tempDir>;
  const config = example('cameras.yaml');
  const rtspSecret = { RTSP_USERNAME: 'viewer', RTSP_PASSWORD: 's3cret-rtsp-pw' };
  const ONVIF_PASSWORD = 'onvif-pw-from-a-secret';
  let source: { child: ChildProcess; port: number };
  let camera: CameraStub;
  let edge: Awaited<ReturnType<typeof startEdge>>;
  let env: Record<string, string>;
  let run: [string, string[]];

  beforeAll(async () => {
    dir = tempDir('lb-example-camera-');
    requireCameraTools();
    source = await startRtspSource();
    // The example names a Secret for the ONVIF password, not the password: the camera wants this one.
    const named = (
      details(config).credentials as { default: { username: string; passwordSecretRef: SecretRef } }
    ).default;
    camera = await startCameraStub({
      multicastInterface: '127.0.0.1',
      httpAddress: '127.0.0.1',
      credentials: { username: named.username, password: ONVIF_PASSWORD },
      rtspBaseUri: `rtsp://127.0.0.1:${source.port}`,
    });
    edge = await startEdge(dir.path, writeSecret(dir.path, named.passwordSecretRef, ONVIF_PASSWORD));
    // The example as it is, on loopback, and only this test's camera (other tests' cameras answer on 127.0.0.1 too).
    const applied = structuredClone(config);
    Object.assign(details(applied), { interface: '127.0.0.1' });
    (details(applied).filters as Loose).uuids = { action: 'include', items: [camera.uuid] };
    await edge.apply(applied);
    const device = await edge.deviceOf(
      'cameras',
      (d) => 'ONVIF_STREAM_URI_PROFILE_MAIN' in d.spec.properties,
      10_000,
    );
    // Read with the Secret's password (the stream URIs need it), and found nowhere in what the agent shows.
    expect(JSON.stringify(device)).not.toContain(ONVIF_PASSWORD);
    const stored = await fetch(`${edge.edge.http}/api/v1/discoveryconfigs/cameras`).then((r) => r.text());
    expect(stored).toContain('passwordSecretRef');
    expect(stored).not.toContain(ONVIF_PASSWORD);
    // Nor in the agent's log at debug level, though discovery read the Secret and used it.
    expect(edge.logs.length).toBeGreaterThan(0);
    expect(edge.logs.join('')).not.toContain(ONVIF_PASSWORD);
    const { container, resource } = brokerContainer(config, device);
    const allocated = await edge.allocate(resource);
    env = podEnv(container, allocated.envs ?? {}, rtspSecret, {
      FRAMES_DIR: join(dir.path, 'frames'),
      HTTP_PORT: '0',
      HTTP_HOST: '127.0.0.1',
      FRAME_RATE: '5',
      HOME: dir.path,
    });
    run = commandOf(container);
  });
  afterAll(async () => {
    await Running.stopAll();
    if (source?.child) await stopProcess(source.child);
    await camera?.stop();
    await edge?.stop();
    dir?.remove();
  });

  it('the pod gets the stream URI of each profile from the Device', () => {
    expect(env.ONVIF_PROFILES).toBe('profile_main,profile_sub');
    expect(env.ONVIF_STREAM_URI_PROFILE_MAIN).toBe(`rtsp://127.0.0.1:${source.port}/profile_main`);
    expect(env.LEAFBRIDGE_DEVICES).toMatch(/^cameras-/);
  });

  it('grabs JPEG frames of the stream: logged, on disk and over HTTP; the RTSP password is never printed', async () => {
    const started = performance.now();
    const broker = new Running(...run, env);
    await broker.waitFor(() => broker.lines('frame').length >= 8, 20_000, '8 frames');
    console.log(`camera broker: 8 frames ${Math.round(performance.now() - started)} ms after start`);
    const frames = broker.lines('frame');
    for (const f of frames) {
      expect(f).toMatchObject({ width: 320, height: 240, device: env.LEAFBRIDGE_DEVICES });
      expect(f.bytes).toBeGreaterThan(2_000);
      expect(f.bytes).toBeLessThan(100_000);
    }
    expect(frames.map((f) => f.frame)).toEqual(frames.map((_, i) => i + 1));

    const port = broker.lines('serving /frame.jpg and /healthz')[0]?.port;
    const res = await fetch(`http://127.0.0.1:${port}/frame.jpg`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(jpeg(Buffer.from(await res.arrayBuffer()))).toBe(true);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ latest: { width: 320, height: 240 } });

    const framesDir = env.FRAMES_DIR!;
    const numbered = () =>
      readdirSync(framesDir)
        .filter((f) => /^frame-\d{6}\.jpg$/.test(f))
        .sort();
    await until(
      () => numbered().length >= 3 && existsSync(join(framesDir, 'latest.jpg')),
      5_000,
      'frame files',
    );
    const files = numbered();
    const [a, b] = files.slice(-2).map((f) => readFileSync(join(framesDir, f)));
    expect(jpeg(a!) && jpeg(b!)).toBe(true);
    expect(a!.equals(b!)).toBe(false); // the pattern scrolls
    expect(probe(join(framesDir, 'latest.jpg'))).toEqual({ codec_name: 'mjpeg', width: 320, height: 240 });

    expect(broker.lines('grabbing frames')[0]?.stream).toBe(
      `rtsp://***@127.0.0.1:${source.port}/profile_main`,
    );
    expect(broker.text.join('\n')).not.toContain(rtspSecret.RTSP_PASSWORD);
    expect(await broker.stop()).toBe(0);
  });

  it('starts ffmpeg again when the stream goes away, and grabs frames once it is back', async () => {
    const broker = new Running(...run, { ...env, FRAMES_DIR: join(dir.path, 'frames-2') });
    await broker.waitFor(() => broker.lines('frame').length >= 2, 20_000, 'first frames');
    const port = source.port;
    await stopProcess(source.child);
    await broker.waitFor(
      () => broker.lines('stream ended; ffmpeg will be restarted').length >= 1,
      10_000,
      'stream end',
    );
    const before = broker.lines('frame').length;
    source = await startRtspSource(port);
    const back = performance.now();
    await broker.waitFor(() => broker.lines('frame').length >= before + 3, 20_000, 'frames again');
    console.log(
      `camera broker: frames again ${Math.round(performance.now() - back)} ms after the stream came back`,
    );
    const ended = broker.lines('stream ended; ffmpeg will be restarted');
    expect(ended[0]).toMatchObject({ retryInMs: 500 });
    expect(JSON.stringify(ended)).not.toContain(rtspSecret.RTSP_PASSWORD);
    expect(await broker.stop()).toBe(0);
  });
});

// -------------------------------------------------------------------------------------------------- PLC

describe('examples/opcua-broker against the simulated PLC', () => {
  let dir: ReturnType<typeof tempDir>;
  const config = example('plcs.yaml');
  let plc: PlcStub;
  let edge: Awaited<ReturnType<typeof startEdge>>;
  let device: DeviceObject;
  let env: Record<string, string>;
  let run: [string, string[]];

  beforeAll(async () => {
    dir = tempDir('lb-example-plc-');
    plc = await startPlcStub({ applicationName: 'press-7', logger: silentLogger() });
    edge = await startEdge(dir.path);
    const applied = structuredClone(config);
    details(applied).discoveryUrls = [plc.endpointUrl];
    await edge.apply(applied);
    device = await edge.deviceOf('plcs', (d) => 'OPCUA_SERIAL_NUMBER' in d.spec.properties, 15_000);
    const { container, resource } = brokerContainer(config, device);
    const allocated = await edge.allocate(resource);
    env = podEnv(
      container,
      allocated.envs ?? {},
      { HOST_IP: '127.0.0.1' },
      {
        // The pod reaches the agent at the node's address, port 1883; this agent listens on a port of its own.
        MQTT_BROKER_URL: edge.edge.url,
        PKI_DIR: join(dir.path, 'pki'),
        SAMPLING_INTERVAL_MS: '250',
        HOME: join(dir.path, 'home'),
      },
    );
    run = commandOf(container);
  });
  afterAll(async () => {
    await Running.stopAll();
    await plc?.stop();
    await edge?.stop();
    dir?.remove();
  });

  it('the pod gets the endpoint URL, security and browse path values from the Device', () => {
    expect(env).toMatchObject({
      OPCUA_ENDPOINT_URL: plc.endpointUrl,
      OPCUA_SECURITY_MODE: 'None',
      OPCUA_SECURITY_POLICY: 'None',
      OPCUA_SERIAL_NUMBER: 'SN-PRESS-7',
      OPCUA_MODEL: 'LB-PLC-1',
      MQTT_BROKER_URL: edge.edge.url,
    });
  });

  it('follows the PLC’s changing values, and publishes them as the Device’s telemetry on the edge broker', async () => {
    const name = device.metadata.name;
    const tap = await collect(edge.edge.url, `devices/${name}/#`);
    const started = performance.now();
    const broker = new Running(...run, env);
    const values = (n: string) =>
      broker
        .lines('value')
        .filter((l) => l.name === n)
        .map((l) => l.value);
    await broker.waitFor(
      () => values('Counter').length >= 4 && values('Temperature').length >= 3,
      20_000,
      'values',
    );
    console.log(`opcua broker: 4 Counter values ${Math.round(performance.now() - started)} ms after start`);

    expect(broker.lines('connecting to the PLC')[0]).toMatchObject({
      device: name,
      identity: { OPCUA_SERIAL_NUMBER: 'SN-PRESS-7', OPCUA_MODEL: 'LB-PLC-1' },
    });
    const counter = values('Counter') as number[];
    expect(counter.every((v, i) => i === 0 || v > counter[i - 1]!)).toBe(true);
    const temperature = values('Temperature') as number[];
    expect(temperature.every((t) => typeof t === 'number' && t > 15 && t < 30)).toBe(true);
    expect(new Set(temperature).size).toBe(temperature.length);
    expect(values('Pressure').length).toBeGreaterThan(0);

    await until(
      () => tap.messages.filter((m) => m.topic.endsWith('/telemetry/Counter')).length >= 3,
      5_000,
      'telemetry',
    );
    const published = tap.messages
      .filter((m) => m.topic === `devices/${name}/telemetry/Counter`)
      .map((m) => JSON.parse(m.payload.toString()) as { value: number; status: string });
    expect(published[0]).toMatchObject({ status: 'Good' });
    // What was published is what was read (values read before the MQTT connection was up are dropped).
    expect(
      published.every((p, i) => counter.includes(p.value) && (i === 0 || p.value > published[i - 1]!.value)),
    ).toBe(true);
    expect(tap.messages.find((m) => m.topic === `devices/${name}/status`)?.payload.toString()).toBe('online');

    expect(await broker.stop()).toBe(0);
    await until(() => tap.messages.at(-1)?.payload.toString() === 'offline', 5_000, 'status offline');
    // Its certificate went to PKI_DIR, not to node-opcua's default under ~/.config.
    expect(existsSync(join(env.PKI_DIR!, 'own/certs'))).toBe(true);
    expect(existsSync(join(env.HOME!, '.config'))).toBe(false);
    await tap.client.endAsync();
  });
});

// ------------------------------------------------------------------------------------------------- serial

describe('the serial-sensors broker (a shell one-liner) against the simulated serial sensor', () => {
  let dir: ReturnType<typeof tempDir>;
  const config = example('serial-sensors.yaml');
  let sensor: SerialSensorStub;
  let edge: Awaited<ReturnType<typeof startEdge>>;

  beforeAll(async () => {
    dir = tempDir('lb-example-serial-');
    if (!which('socat')) throw new Error('socat is not installed: run scripts/install-test-deps.sh');
    mkdirSync(join(dir.path, 'dev'));
    sensor = await startSerialSensorStub({
      dir: join(dir.path, 'dev'),
      name: 'ttyUSB0',
      serial: 'EX-1',
      readingIntervalMs: 200,
      temperature: 22.5,
      logger: silentLogger(),
    });
    // The simulated sensor is a pseudo-terminal: the agent must allow its probe to write there.
    edge = await startEdge(dir.path, { discovery: { probeWritePaths: [sensor.nodePath] } });
  });
  afterAll(async () => {
    await Running.stopAll();
    await sensor?.stop();
    await edge?.stop();
    dir?.remove();
  });

  it('the probe finds the sensor; its pod gets the device node and reads the readings it streams', async () => {
    const applied = structuredClone(config);
    details(applied).paths = [join(dir.path, 'dev/ttyUSB*')];
    await edge.apply(applied);
    const device = await edge.deviceOf('serial-sensors', () => true, 10_000);
    const { container, resource } = brokerContainer(config, device);
    const allocated = await edge.allocate(resource);
    expect(allocated.devices).toEqual([
      { host_path: sensor.nodePath, container_path: sensor.devicePath, permissions: 'rw' },
    ]);
    const env = podEnv(container, allocated.envs ?? {}, {});
    expect(env).toMatchObject({
      SERIAL_DEVICE_PATH: sensor.devicePath,
      SERIAL_PROBE_REPLY: 'LEAFBRIDGE-SENSOR,TH-100,EX-1',
    });

    const reader = new Running(...commandOf(container), env);
    await reader.waitFor(() => reader.text.filter((l) => l.startsWith('T=')).length >= 3, 10_000, 'readings');
    expect(reader.text[0]).toBe(`reading ${sensor.devicePath}: LEAFBRIDGE-SENSOR,TH-100,EX-1`);
    expect(reader.text.filter((l) => l.startsWith('T=')).slice(0, 3)).toEqual(['T=22.5', 'T=22.5', 'T=22.5']);
    await reader.stop();
  });
});

// ---------------------------------------------------------------------------------------------- MQTT device

describe('examples/mqtt-device against a real agent, with a desired twin set from the cloud', () => {
  let dir: ReturnType<typeof tempDir>;
  const config = example('mqtt-devices.yaml');
  const upstream = new UpstreamBroker();
  const id = 'thermostat-1';
  const cloudTopic = (rest: string) => `leafbridge/edge-1/devices/${id}/${rest}`;
  const tapSecret = { MQTT_USERNAME: 'tap', MQTT_PASSWORD: 'tap-pw' };
  let edge: Awaited<ReturnType<typeof startEdge>>;
  let cloud: Awaited<ReturnType<typeof collect>>;
  let thermostat: Running;

  const reported = () => cloud.messages.filter((m) => m.topic === cloudTopic('twin/reported')).map(json);
  const telemetry = () => cloud.messages.filter((m) => m.topic === cloudTopic('telemetry/temperature'));

  beforeAll(async () => {
    dir = tempDir('lb-example-mqtt-');
    await upstream.start(0);
    const discovery = details(config) as { username: string; passwordSecretRef: SecretRef };
    const discoveryPassword = 'discovery-pw-from-a-secret';
    const auth = {
      allowAnonymous: true, // the thermostat connects without credentials (auth.devices in production)
      users: [
        {
          username: discovery.username,
          passwordHash: await hashPassword(discoveryPassword),
          subscribe: ['devices/+/birth', 'devices/+/status'],
        },
        {
          username: tapSecret.MQTT_USERNAME,
          passwordHash: await hashPassword(tapSecret.MQTT_PASSWORD),
          subscribe: ['devices/+/telemetry/#'],
        },
      ],
    };
    edge = await startEdge(
      dir.path,
      { auth, ...writeSecret(dir.path, discovery.passwordSecretRef, discoveryPassword) },
      upstream.url,
    );
    cloud = await collect(upstream.url, `leafbridge/edge-1/devices/${id}/#`);
  });
  afterAll(async () => {
    await Running.stopAll();
    await cloud?.client.endAsync();
    await edge?.stop();
    await upstream.kill();
    dir?.remove();
  });

  it('announces itself: the mqtt DiscoveryConfig lists it with the properties of its birth', async () => {
    const applied = structuredClone(config);
    details(applied).brokerUrl = edge.edge.url;
    await edge.apply(applied);
    thermostat = new Running(process.execPath, [join(ROOT, 'dist/examples/mqtt-device/main.js')], {
      PATH: process.env.PATH ?? '',
      DEVICE_ID: id,
      MQTT_BROKER_URL: edge.edge.url,
    });
    const device = await edge.deviceOf('mqtt-devices', (d) => d.spec.id === id, 10_000);
    expect(device.spec.properties).toMatchObject({
      MQTT_DEVICE_ID: id,
      MQTT_BROKER_URL: edge.edge.url,
      MQTT_TELEMETRY_TOPIC: `devices/${id}/telemetry/#`,
      THERMOSTAT_MODEL: 'lb-example-thermostat',
      THERMOSTAT_FIRMWARE: '1.0.0',
    });
    await until(() => reported().length > 0, 5_000, 'the first reported twin upstream');
    expect(reported()[0]).toMatchObject({ model: 'lb-example-thermostat', setpoint: 21, desiredVersion: 0 });
    expect(cloud.messages.find((m) => m.topic === cloudTopic('status'))?.payload.toString()).toBe('online');
  });

  it('applies a desired twin from the cloud, reports what it applied and refused, and acts on it', async () => {
    const operator = await connect(upstream.url);
    const sent = performance.now();
    const desired = { $version: 5, setpoint: 26, mode: 'eco', telemetryIntervalMs: 200, colour: 'red' };
    await operator.publishAsync(cloudTopic('twin/desired'), JSON.stringify(desired), {
      qos: 1,
      retain: true,
    });
    await until(() => reported().some((r) => r.desiredVersion === 5), 5_000, 'reported desiredVersion 5');
    console.log(
      `mqtt device: cloud desired → reported upstream in ${Math.round(performance.now() - sent)} ms`,
    );
    const twin = reported().find((r) => r.desiredVersion === 5);
    expect(twin).toEqual({
      setpoint: 26,
      mode: 'eco',
      telemetryIntervalMs: 200,
      desiredVersion: 5,
      refused: ['colour: unknown setting'],
      model: 'lb-example-thermostat',
      firmware: '1.0.0',
      $version: expect.any(Number),
    });

    // Telemetry now comes every 200 ms, with the new settings.
    const from = telemetry().length;
    await until(() => telemetry().length >= from + 6, 5_000, 'telemetry at the new interval');
    const recent = telemetry().slice(-5).map(json);
    expect(recent.every((t) => t.setpoint === 26 && t.mode === 'eco')).toBe(true);
    const gaps = recent.slice(1).map((t, i) => (t.at as number) - (recent[i]!.at as number));
    expect(Math.max(...gaps)).toBeLessThan(600);

    // A bad value is refused, the rest of the device stays as it was.
    await operator.publishAsync(cloudTopic('twin/desired'), JSON.stringify({ $version: 6, setpoint: 99 }), {
      qos: 1,
      retain: true,
    });
    await until(() => reported().some((r) => r.desiredVersion === 6), 5_000, 'reported desiredVersion 6');
    expect(reported().find((r) => r.desiredVersion === 6)).toMatchObject({
      setpoint: 26,
      refused: ['setpoint: must be a number from 5 to 35'],
    });
    await operator.endAsync();
  });

  it('its pod (mosquitto_sub, from the config) reads its telemetry with the properties it is given', async () => {
    if (!which('mosquitto_sub'))
      throw new Error('mosquitto_sub is missing: run scripts/install-test-deps.sh');
    const device = await edge.deviceOf('mqtt-devices', (d) => d.spec.id === id, 1_000);
    const { container, resource } = brokerContainer(config, device);
    const allocated = await edge.allocate(resource);
    const tap = new Running(...commandOf(container), podEnv(container, allocated.envs ?? {}, tapSecret));
    await tap.waitFor(() => tap.text.length >= 3, 5_000, 'telemetry lines');
    for (const line of tap.text.slice(0, 3)) {
      const [topic, payload] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)];
      expect(topic).toBe(`devices/${id}/telemetry/temperature`);
      expect(JSON.parse(payload)).toMatchObject({ setpoint: 26, mode: 'eco' });
    }
    await tap.stop();
  });

  it('stops cleanly: status offline upstream', async () => {
    expect(await thermostat.stop()).toBe(0);
    await until(
      () =>
        cloud.messages
          .filter((m) => m.topic === cloudTopic('status'))
          .at(-1)
          ?.payload.toString() === 'offline',
      5_000,
      'status offline upstream',
    );
  });
});

function json(m: Received): Record<string, unknown> {
  return JSON.parse(m.payload.toString()) as Record<string, unknown>;
}
