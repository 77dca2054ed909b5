import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { firstList } from '../helpers/modbusPeers.js';
import { CLI, stopProcess, tempDir, waitForLine } from '../helpers/processes.js';

/** `leafbridge simulate modbus`, found by the real handler and read by pymodbus's own client. */
describe('leafbridge simulate modbus', () => {
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const c of children.splice(0)) await stopProcess(c);
  });

  async function simulate(...args: string[]): Promise<number> {
    const child = spawn(process.execPath, [CLI, 'simulate', 'modbus', '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const url = await waitForLine(
      child,
      (l) => (typeof l.modbus === 'string' ? l.modbus : undefined),
      10_000,
    );
    return Number(new URL(url).port);
  }

  it('its meters are found with identity and registers', async () => {
    const port = await simulate('--units', '3');
    const { devices } = await firstList({
      hosts: [`127.0.0.1:${port}`],
      unitIdRange: { first: 1, last: 4 },
      registers: [{ name: 'current', address: 1 }],
      timeoutMs: 300,
    });
    expect(devices.map((d) => d.properties.MODBUS_UNIT_ID)).toEqual(['1', '2', '3']);
    expect(devices[1]!.properties).toMatchObject({
      MODBUS_VENDOR: 'Leafbridge Simulated',
      MODBUS_PRODUCT_CODE: 'LB-EM2',
      MODBUS_REVISION: '1.0',
      MODBUS_REGISTER_CURRENT: '20',
    });
  }, 15_000);

  it('with --no-identity its meters are found by registers alone', async () => {
    const port = await simulate('--no-identity', '--units', '1');
    const { devices } = await firstList({
      hosts: [`127.0.0.1:${port}`],
      registers: [{ name: 'voltage', address: 0 }],
      timeoutMs: 300,
    });
    expect(devices).toHaveLength(1);
    expect(devices[0]!.properties.MODBUS_VENDOR).toBeUndefined();
    expect(devices[0]!.properties.MODBUS_REGISTER_VOLTAGE).toBe('230');
  }, 15_000);

  it('answers pymodbus’s client (registers, device identification, an exception for a bad address)', async () => {
    const port = await simulate('--units', '1');
    expect(pymodbusRead(`ModbusTcpClient("127.0.0.1", port=${port}, timeout=2)`, 1)).toEqual({
      registers: [230, 10, 0x4c42, 1],
      info: { '0': 'Leafbridge Simulated', '1': 'LB-EM1', '2': '1.0' },
      bad: true,
    });
  }, 15_000);
});

/** `leafbridge simulate modbus --rtu`: the same meters on an RTU line (a socat pty), read over the pty. */
describe('leafbridge simulate modbus --rtu', () => {
  const dir = tempDir('lb-modbus-rtu-stub-');
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const c of children.splice(0)) await stopProcess(c);
  });
  afterAll(() => dir.remove());

  /** Starts the stub with its line linked at `path`; resolves with the pty it points to. */
  async function simulateRtu(path: string, ...args: string[]): Promise<string> {
    const child = spawn(process.execPath, [CLI, 'simulate', 'modbus', '--rtu', path, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    const line = await waitForLine(
      child,
      (l) => (l.modbus === `rtu://${path}` && typeof l.pty === 'string' ? l.pty : undefined),
      10_000,
    );
    return line;
  }

  it('its meters are found over the line with identity and registers, the pty as the device node', async () => {
    const path = join(dir.path, 'ttyMB0');
    const pty = await simulateRtu(path, '--units', '3');
    const { devices } = await firstList(
      {
        serialPorts: [{ path, baudRate: 9600 }],
        unitIdRange: { first: 1, last: 4 },
        registers: [{ name: 'current', address: 1 }],
        timeoutMs: 500,
      },
      [pty],
    );
    expect(devices.map((d) => d.id)).toEqual([1, 2, 3].map((u) => `rtu://${path}/${u}`));
    expect(devices[1]).toEqual({
      id: `rtu://${path}/2`,
      properties: {
        MODBUS_ENDPOINT: `rtu://${path}`,
        MODBUS_SERIAL_PORT: path,
        MODBUS_UNIT_ID: '2',
        MODBUS_VENDOR: 'Leafbridge Simulated',
        MODBUS_PRODUCT_CODE: 'LB-EM2',
        MODBUS_REVISION: '1.0',
        MODBUS_REGISTER_CURRENT: '20',
      },
      deviceNodes: [{ hostPath: pty, containerPath: path, permissions: 'rw' }],
    });
  }, 15_000);

  it('answers pymodbus’s serial client over RTU (registers, device identification, a bad address)', async () => {
    const path = join(dir.path, 'ttyMB1');
    await simulateRtu(path, '--units', '2');
    const client = `ModbusSerialClient(${JSON.stringify(path)}, baudrate=9600, timeout=2)`;
    expect(pymodbusRead(client, 2)).toEqual({
      registers: [230, 20, 0x4c42, 2],
      info: { '0': 'Leafbridge Simulated', '1': 'LB-EM2', '2': '1.0' },
      bad: true,
    });
  }, 15_000);

  it('removes its link when it stops, and refuses a path that is in use', async () => {
    const path = join(dir.path, 'ttyMB2');
    await simulateRtu(path);
    const second = spawnSync(process.execPath, [CLI, 'simulate', 'modbus', '--rtu', path], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(second.status).toBe(2);
    expect(second.stderr).toContain(`${path} already exists`);
    for (const c of children.splice(0)) await stopProcess(c);
    expect(existsSync(path)).toBe(false);
  }, 15_000);
});

/**
 * Reads unit `unit` with Debian's pymodbus through `client` (a Python expression making a ModbusTcpClient or
 * ModbusSerialClient): four holding registers, the device identification, and an address that must fail.
 */
function pymodbusRead(client: string, unit: number): unknown {
  const script = `
import json
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.mei_message import ReadDeviceInformationRequest
c = ${client}
c.connect()
r = c.read_holding_registers(0, 4, slave=${unit})
i = c.execute(ReadDeviceInformationRequest(unit=${unit}))
bad = c.read_holding_registers(100, 1, slave=${unit})
print(json.dumps({"registers": r.registers, "info": {str(k): v.decode() for k, v in i.information.items()},
                  "bad": bad.isError()}))
c.close()
`;
  const run = spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8', timeout: 10_000 });
  expect(run.stderr).toBe('');
  return JSON.parse(run.stdout);
}
