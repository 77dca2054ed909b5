import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceObject } from '../../src/model/resources.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { startInProcessAgent, until } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';
import { TestKubelet } from '../helpers/testKubelet.js';

describe('the agent offers its Devices to the kubelet', () => {
  const dir = tempDir();
  const plugins = join(dir.path, 'device-plugins');
  const presence = join(dir.path, 'present');
  const kubelet = new TestKubelet(plugins);
  let edge: Awaited<ReturnType<typeof startInProcessAgent>>;
  let device: DeviceObject;

  beforeAll(async () => {
    mkdirSync(plugins, { recursive: true });
    await kubelet.start();
    writeFileSync(presence, 'sensor-a\n');
    edge = await startInProcessAgent(
      agentConfig(join(dir.path, 'data'), undefined, {
        devicePlugins: { dir: plugins },
        discoveryConfigs: [
          {
            name: 'echo',
            spec: {
              capacity: 2,
              handler: {
                name: 'debug-echo',
                details: {
                  devices: [{ id: 'sensor-a', properties: { SENSOR_URL: 'tcp://10.0.0.5:502' } }],
                  presenceFile: presence,
                },
              },
            },
          },
        ],
      }),
    );
    await until(() => edge.agent.registry.list().length === 1, 5000, 'device discovered');
    device = edge.agent.registry.list()[0]!;
  });
  afterAll(async () => {
    await edge?.agent.stop();
    await kubelet.stop();
    dir.remove();
  });

  it('registers a resource per device and per config, each with the capacity slots', async () => {
    const own = `leafbridge.io/${device.metadata.name}`;
    await kubelet.waitFor(
      () => (kubelet.devices(own).length === 2 ? true : undefined),
      5000,
      'device resource',
    );
    await kubelet.waitFor(
      () => (kubelet.devices('leafbridge.io/echo').length === 2 ? true : undefined),
      5000,
      'config resource',
    );
    expect(kubelet.devices(own).every((d) => d.health === 'Healthy')).toBe(true);
    const res = await kubelet.allocate(own, [kubelet.devices(own)[0]!.ID]);
    expect(res.container_responses?.[0]?.envs).toMatchObject({ SENSOR_URL: 'tcp://10.0.0.5:502' });
  });

  it('a device going offline makes its slots Unhealthy at the kubelet', async () => {
    const own = `leafbridge.io/${device.metadata.name}`;
    const gone = Date.now();
    writeFileSync(presence, '');
    await kubelet.waitFor(
      () => (kubelet.devices(own).every((d) => d.health === 'Unhealthy') ? true : undefined),
      10_000,
      'slots unhealthy',
    );
    // The latency target (1 s) is judged in bench/deviceplugin.ts, not on a loaded test machine.
    console.log(
      `agent: device offline → slots Unhealthy at the kubelet in ${Date.now() - gone} ms (presence-file change included)`,
    );
  });

  it('stopping the agent leaves no plugin sockets', async () => {
    await edge.agent.stop();
    const left = readdirSync(plugins).filter((f) => f.startsWith('leafbridge'));
    expect(left).toEqual([]);
    expect(existsSync(join(plugins, 'kubelet.sock'))).toBe(true);
  });
});
