import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { DeviceObject, DiscoveryConfigObject } from '../../src/model/resources.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { type AgentProcess, ROOT, startAgent, stopProcess, tempDir } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

const HANDLER = join(ROOT, 'examples', 'akri-handler', 'handler.py');
const GRACE_MS = 4000;

/**
 * An Akri discovery handler written in Python (grpcio, messages encoded by hand) registers with the agent,
 * discovers, is killed and comes back: the agent speaks Akri's protocol to a peer it shares no code with.
 */
describe('an Akri discovery handler in Python', () => {
  const dir = tempDir('lb-akri-');
  const sockets = join(dir.path, 'akri');
  const devicesFile = join(dir.path, 'devices.json');
  const detailsOut = join(dir.path, 'details.yaml');
  let agent: AgentProcess;
  let api: string;
  let handler: ChildProcess | undefined;
  const devices = async () =>
    ((await (await fetch(`${api}/api/v1/devices`)).json()) as { items: DeviceObject[] }).items;
  const config = async () =>
    (await (await fetch(`${api}/api/v1/discoveryconfigs/sensors`)).json()) as DiscoveryConfigObject;

  function startHandler(): ChildProcess {
    const child = spawn(
      '/usr/bin/python3',
      [
        HANDLER,
        '--dir',
        sockets,
        '--name',
        'py-sensors',
        '--shared',
        '--devices',
        devicesFile,
        '--details-out',
        detailsOut,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    handler = child;
    return child;
  }

  beforeAll(async () => {
    writeFileSync(
      devicesFile,
      JSON.stringify([
        {
          id: '10.0.0.7:502',
          properties: { SENSOR_URL: 'tcp://10.0.0.7:502', VENDOR: 'acme' },
          mounts: [{ container_path: '/etc/sensor', host_path: '/etc/sensor.d', read_only: true }],
          device_specs: [{ container_path: '/dev/sensor0', host_path: '/dev/ttyUSB7', permissions: 'rw' }],
        },
        { id: '10.0.0.8:502', properties: { SENSOR_URL: 'tcp://10.0.0.8:502' } },
      ]),
    );
    agent = await startAgent(
      dir.path,
      agentConfig(join(dir.path, 'data'), undefined, {
        discovery: {
          gracePeriod: `${GRACE_MS}ms`,
          external: { handlers: ['py-sensors'], dir: sockets, minListInterval: '50ms' },
        },
        discoveryConfigs: [
          {
            name: 'sensors',
            spec: {
              handler: {
                name: 'py-sensors',
                details: { subnet: '10.0.0.0/24', ports: [502], timeoutSeconds: 2 },
              },
              capacity: 2,
            },
          },
        ],
      }),
    );
    api = `http://127.0.0.1:${agent.http.port}`;
  });
  afterAll(async () => {
    if (handler) await stopProcess(handler, 'SIGKILL');
    await stopProcess(agent.child);
    dir.remove();
  });

  it('waits for the handler, which registers and discovers; details arrive as YAML, devices with their mounts and device specs', {
    timeout: 20_000,
  }, async () => {
    await until(
      async () => (await config()).status.conditions.some((c) => c.reason === 'NotRegistered'),
      5000,
      'the config waiting for its handler',
    );
    const started = Date.now();
    startHandler();
    await until(
      async () => (await devices()).filter((d) => d.status.online).length === 2,
      10_000,
      'two devices',
    );
    console.info(`akri python handler: start → 2 devices online in ${Date.now() - started} ms`);
    expect(parse(readFileSync(detailsOut, 'utf8'))).toEqual({
      subnet: '10.0.0.0/24',
      ports: [502],
      timeoutSeconds: 2,
    });
    const seven = (await devices()).find((d) => d.spec.id === '10.0.0.7:502');
    expect(seven?.spec).toMatchObject({
      handler: 'py-sensors',
      configName: 'sensors',
      shared: true,
      capacity: 2,
      properties: { SENSOR_URL: 'tcp://10.0.0.7:502', VENDOR: 'acme' },
      mounts: [{ hostPath: '/etc/sensor.d', containerPath: '/etc/sensor', readOnly: true }],
      deviceNodes: [{ hostPath: '/dev/ttyUSB7', containerPath: '/dev/sensor0', permissions: 'rw' }],
    });
    expect((await config()).status.conditions).toContainEqual(
      expect.objectContaining({ type: 'Running', status: 'True' }),
    );
  });

  it('follows the lists it streams: a device it stops listing goes offline', {
    timeout: 10_000,
  }, async () => {
    writeFileSync(
      devicesFile,
      JSON.stringify([{ id: '10.0.0.7:502', properties: { SENSOR_URL: 'tcp://10.0.0.7:502' } }]),
    );
    await until(
      async () => (await devices()).find((d) => d.spec.id === '10.0.0.8:502')?.status.online === false,
      5000,
      '10.0.0.8 offline',
    );
    expect((await devices()).find((d) => d.spec.id === '10.0.0.7:502')?.status.online).toBe(true);
  });

  it('killed: its devices go offline at once; started again: it registers and they are back under the same names', {
    timeout: 20_000,
  }, async () => {
    const before = (await devices()).find((d) => d.spec.id === '10.0.0.7:502');
    expect(before?.status.online).toBe(true);
    await stopProcess(handler as ChildProcess, 'SIGKILL');
    const killed = Date.now();
    await until(
      async () => (await devices()).find((d) => d.spec.id === '10.0.0.7:502')?.status.online === false,
      3000,
      'offline after the kill',
    );
    const offlineMs = Date.now() - killed;
    expect((await config()).status.conditions).toContainEqual(
      expect.objectContaining({ type: 'Running', status: 'False', reason: 'HandlerFailed' }),
    );
    const restarted = Date.now();
    startHandler();
    await until(
      async () => (await devices()).find((d) => d.spec.id === '10.0.0.7:502')?.status.online === true,
      10_000,
      'online again',
    );
    console.info(
      `akri python handler: kill → offline ${offlineMs} ms; restart → online ${Date.now() - restarted} ms`,
    );
    const after = (await devices()).find((d) => d.spec.id === '10.0.0.7:502');
    expect(after?.metadata.name).toBe(before?.metadata.name);
    expect(after?.metadata.uid).toBe(before?.metadata.uid);
  });

  it('a device gone longer than the grace period is deleted', { timeout: 15_000 }, async () => {
    await until(
      async () => !(await devices()).some((d) => d.spec.id === '10.0.0.8:502'),
      GRACE_MS + 5000,
      '10.0.0.8 deleted',
    );
    expect(existsSync(join(sockets, 'agent-registration.sock'))).toBe(true);
  });
});
