import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { firstList } from '../helpers/modbusPeers.js';
import { CLI, stopProcess, waitForLine } from '../helpers/processes.js';

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
    const script = `
import json
from pymodbus.client import ModbusTcpClient
from pymodbus.mei_message import ReadDeviceInformationRequest
c = ModbusTcpClient("127.0.0.1", port=${port}, timeout=2)
c.connect()
r = c.read_holding_registers(0, 4, slave=1)
i = c.execute(ReadDeviceInformationRequest(unit=1))
bad = c.read_holding_registers(100, 1, slave=1)
print(json.dumps({"registers": r.registers, "info": {str(k): v.decode() for k, v in i.information.items()},
                  "bad": bad.isError()}))
c.close()
`;
    const run = spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8', timeout: 10_000 });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({
      registers: [230, 10, 0x4c42, 1],
      info: { '0': 'Leafbridge Simulated', '1': 'LB-EM1', '2': '1.0' },
      bad: true,
    });
  }, 15_000);
});
