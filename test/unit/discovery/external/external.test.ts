import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtinHandlers } from '../../../../src/builtinHandlers.js';
import { parseConfig } from '../../../../src/config/load.js';
import { discoveryDetailsYaml } from '../../../../src/discovery/external/externalHandler.js';
import { toDiscovered } from '../../../../src/discovery/external/protocol.js';
import { externalHandlerSpecs, withExternal } from '../../../../src/discovery/external/schema.js';
import { discoveryConfigProblems } from '../../../../src/model/discoveryConfigs.js';
import { CLI, tempDir } from '../../../helpers/processes.js';

describe('external handlers: details, devices, config', () => {
  it('sends details as one YAML document, or discoveryDetails alone as it is', () => {
    expect(discoveryDetailsYaml({})).toBe('');
    const akri = 'ipAddresses:\n  action: Exclude\n  items: []\ndiscoveryTimeoutSeconds: 2\n';
    expect(discoveryDetailsYaml({ discoveryDetails: akri })).toBe(akri);
    const details = {
      subnet: '10.0.0.0/24',
      ports: [502],
      nested: { a: true },
      discoveryDetails: 'kept as a key',
    };
    expect(parse(discoveryDetailsYaml(details))).toEqual(details);
  });

  it('turns an Akri device into a Device part: mounts, device specs, and refuses bad paths', () => {
    const device = {
      id: '/dev/video0',
      properties: { UDEV_DEVNODE: '/dev/video0' },
      mounts: [{ container_path: '/lib/fw', host_path: '/lib/firmware', read_only: true }],
      device_specs: [{ container_path: '/dev/video0', host_path: '/dev/video0', permissions: 'rwm' }],
    };
    expect(toDiscovered(device)).toEqual({
      id: '/dev/video0',
      properties: { UDEV_DEVNODE: '/dev/video0' },
      mounts: [{ hostPath: '/lib/firmware', containerPath: '/lib/fw', readOnly: true }],
      deviceNodes: [{ hostPath: '/dev/video0', containerPath: '/dev/video0', permissions: 'rwm' }],
    });
    const spec = device.device_specs[0] as (typeof device.device_specs)[0];
    expect(toDiscovered({ ...device, device_specs: [{ ...spec, host_path: 'video0' }] })).toMatch(
      /not absolute/,
    );
    expect(toDiscovered({ ...device, device_specs: [{ ...spec, permissions: 'x' }] })).toMatch(/not r, w, m/);
  });

  it('a listed name takes the place of a built-in handler of that name; configs naming it are valid', () => {
    const handlers = withExternal(builtinHandlers, externalHandlerSpecs(['onvif', 'udev']));
    expect(handlers.filter((h) => h.name === 'onvif')).toHaveLength(1);
    const config = (name: string, details: Record<string, unknown>) => ({
      name: `c-${name}`,
      spec: { handler: { name, details }, capacity: 1, properties: {} },
    });
    expect(
      discoveryConfigProblems(
        [config('onvif', { anything: [1] }), config('udev', { udevRules: ['KERNEL=="video*"'] })],
        handlers,
      ),
    ).toEqual([]);
    expect(discoveryConfigProblems([config('udev', {})], builtinHandlers)[0]).toMatch(/unknown handler udev/);
  });

  it('config: the socket directory defaults to DATADIR/akri; names are checked', () => {
    const c = parseConfig({
      node: 'n',
      dataDir: '/var/lib/lb',
      discovery: { external: { handlers: ['udev', 'udev'] } },
    });
    expect(c.discovery.external).toEqual({
      handlers: ['udev'],
      dir: '/var/lib/lb/akri',
      firstListTimeoutMs: 30_000,
      minListIntervalMs: 500,
      maxDevices: 10_000,
      maxMessageBytes: 4 * 1024 * 1024,
    });
    expect(() =>
      parseConfig({ node: 'n', discovery: { external: { handlers: ['a/b'], dir: 'rel' } } }),
    ).toThrow(
      /discovery\.external\.handlers\[0\].*\n.*discovery\.external\.dir: must be an absolute directory/,
    );
  });

  it('the agent refuses a config naming a handler neither built in nor listed in discovery.external (exit 2)', () => {
    const dir = tempDir('lb-akri-cfg-');
    try {
      const file = join(dir.path, 'agent.yaml');
      writeFileSync(
        file,
        JSON.stringify({
          node: 'n',
          dataDir: dir.path,
          discoveryConfigs: [{ name: 'x', spec: { handler: { name: 'udev', details: {} } } }],
        }),
      );
      const refused = spawnSync(process.execPath, [CLI, 'agent', '--config', file], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(/spec\.handler\.name: unknown handler udev/);
    } finally {
      dir.remove();
    }
  });
});
