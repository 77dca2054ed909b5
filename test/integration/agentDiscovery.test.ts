import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMqttSensor } from '../../firmware-stubs/mqtt-sensor/sensor.js';
import { startSerialSensorStub } from '../../firmware-stubs/serial/index.js';
import type { DeviceObject } from '../../src/model/resources.js';
import { silentLogger } from '../../src/util/logger.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { until } from '../helpers/mqtt.js';
import {
  type AgentProcess,
  CLI,
  startAgent,
  stopProcess,
  tempDir,
  waitForLine,
} from '../helpers/processes.js';

const GRACE_MS = 1500;

describe('the agent runs its DiscoveryConfigs and serves Device objects', () => {
  const dir = tempDir();
  const ttys = join(dir.path, 'dev');
  let agent: AgentProcess;
  let api: string;
  const devices = async () =>
    ((await (await fetch(`${api}/api/v1/devices`)).json()) as { items: DeviceObject[] }).items;

  beforeAll(async () => {
    spawnSync('mkdir', ['-p', ttys]);
    agent = await startAgent(
      dir.path,
      agentConfig(join(dir.path, 'data'), undefined, {
        // The sensor stubs are pseudo-terminals: the probe may write to them.
        discovery: { gracePeriod: `${GRACE_MS}ms`, probeWritePaths: ['/dev/pts/'] },
        discoveryConfigs: [
          {
            name: 'thermo',
            spec: {
              handler: {
                name: 'serial',
                details: {
                  paths: [`${ttys}/tty*`],
                  probe: { write: 'ID?\\r\\n', expect: '^LEAFBRIDGE-SENSOR', timeoutMs: 1000 },
                },
              },
              capacity: 1,
            },
          },
        ],
      }),
    );
    api = `http://127.0.0.1:${agent.http.port}`;
  });
  afterAll(async () => {
    await stopProcess(agent.child);
    dir.remove();
  });

  it('lists a sensor as a Device within 2 s, marks it offline at once when it goes, removes it after the grace period', async () => {
    const stub = await startSerialSensorStub({ dir: ttys, serial: 'A1B2', logger: silentLogger() });
    const appeared = Date.now();
    await until(async () => (await devices()).some((d) => d.status.online), 2000, 'device online');
    const listedMs = Date.now() - appeared;
    const [device] = await devices();
    expect(device?.metadata.name).toMatch(/^thermo-[0-9a-f]{16}$/);
    expect(device?.spec).toMatchObject({
      configName: 'thermo',
      handler: 'serial',
      shared: false,
      nodes: ['edge-1'],
    });
    expect(device?.spec.properties.SERIAL_PROBE_REPLY).toContain('LEAFBRIDGE-SENSOR');
    expect(device?.spec.deviceNodes[0]?.containerPath).toBe(stub.devicePath);
    const one = await fetch(`${api}/api/v1/devices/${device!.metadata.name}`);
    expect(((await one.json()) as DeviceObject).spec.id).toBe(device!.spec.id);
    expect((await fetch(`${api}/api/v1/devices/nope-000000`)).status).toBe(404);

    const table = spawnSync(process.execPath, [CLI, 'get', 'devices', '--server', api], { encoding: 'utf8' });
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+CONFIG\s+HANDLER\s+ONLINE\s+NODES\s+AGE/);
    expect(table.stdout).toMatch(
      new RegExp(`${device!.metadata.name}\\s+thermo\\s+serial\\s+true\\s+edge-1`),
    );
    const json = spawnSync(process.execPath, [CLI, 'get', 'devices', '-o', 'json', '--server', api], {
      encoding: 'utf8',
    });
    expect((JSON.parse(json.stdout) as { items: unknown[] }).items).toHaveLength(1);
    const configs = spawnSync(process.execPath, [CLI, 'get', 'configs', '--server', api], {
      encoding: 'utf8',
    });
    expect(configs.stdout).toMatch(/thermo\s+serial\s+1\s+1\s+True\s+True/);

    // The clock starts before the stop: the agent may notice the port gone before stop() returns.
    const vanished = Date.now();
    await stub.stop();
    await until(async () => (await devices()).every((d) => !d.status.online), 2000, 'device offline');
    const offlineMs = Date.now() - vanished;
    expect(await devices()).toHaveLength(1);
    await until(async () => (await devices()).length === 0, GRACE_MS + 2000, 'device removed');
    const removedMs = Date.now() - vanished;
    expect(removedMs).toBeGreaterThanOrEqual(GRACE_MS);
    console.log(
      `serial via agent: listed ${listedMs} ms, offline ${offlineMs} ms, removed ${removedMs} ms (grace ${GRACE_MS})`,
    );
  });

  it('refuses bad handler details at start-up with their path, exit 2', () => {
    const file = join(dir.path, 'bad.yaml');
    spawnSync('sh', [
      '-c',
      `printf 'node: e\\ndataDir: ${dir.path}/x\\ndiscoveryConfigs:\\n  - name: c\\n    spec: {handler: {name: serial, details: {paths: 5}}}\\n  - name: d\\n    spec: {handler: {name: nosuch}}\\n' > ${file}`,
    ]);
    const run = spawnSync(process.execPath, [CLI, 'agent', '--config', file], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('discoveryConfigs[0].spec.handler.details.paths:');
    expect(run.stderr).toContain('discoveryConfigs[1].spec.handler.name: unknown handler nosuch');
  });
});

describe('MQTT devices announcing themselves on the agent’s own broker', () => {
  const dir = tempDir();
  let agent: AgentProcess;
  let api: string;
  let brokerUrl: string;
  const devices = async () =>
    ((await (await fetch(`${api}/api/v1/devices`)).json()) as { items: DeviceObject[] }).items;

  beforeAll(async () => {
    // The broker binds port 0; the config naming it is created over the API once the port is known.
    agent = await startAgent(
      dir.path,
      agentConfig(join(dir.path, 'data'), undefined, { discovery: { gracePeriod: '1s' } }),
    );
    api = `http://127.0.0.1:${agent.http.port}`;
    brokerUrl = `mqtt://127.0.0.1:${agent.broker.port}`;
    const created = await fetch(`${api}/api/v1/discoveryconfigs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'leafbridge.io/v1alpha1',
        kind: 'DiscoveryConfig',
        metadata: { name: 'sensors' },
        spec: { handler: { name: 'mqtt', details: { brokerUrl } } },
      }),
    });
    expect(created.status).toBe(201);
    await waitForLine(agent.child, (l) => (l.msg === 'connected to broker' ? true : undefined));
  });
  afterAll(async () => {
    await stopProcess(agent.child);
    dir.remove();
  });

  it('a sensor’s birth makes a Device within 1 s; its last will makes it offline', async () => {
    const sensor = await startMqttSensor({ url: brokerUrl, id: 'th-7', protocolVersion: 4 });
    const announced = Date.now();
    await until(
      async () => (await devices()).some((d) => d.spec.id === 'th-7' && d.status.online),
      1000,
      'listed',
    );
    const listedMs = Date.now() - announced;
    const [device] = await devices();
    expect(device?.spec.properties).toMatchObject({
      MQTT_DEVICE_ID: 'th-7',
      SENSOR_MODEL: expect.any(String),
    });
    sensor.crash();
    const crashed = Date.now();
    await until(async () => (await devices()).every((d) => !d.status.online), 3000, 'offline by last will');
    console.log(`mqtt via agent: listed ${listedMs} ms, offline ${Date.now() - crashed} ms after a crash`);
  });
});
