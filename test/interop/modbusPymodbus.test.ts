import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firstList, startPymodbus, startStub } from '../helpers/modbusPeers.js';
import { freePort } from '../helpers/processes.js';

/** The modbus handler against Debian's python3-pymodbus, a Modbus TCP server nobody here wrote. */
describe('modbus discovery against pymodbus', () => {
  let pymodbus: Awaited<ReturnType<typeof startPymodbus>>;
  let silent: Awaited<ReturnType<typeof startStub>>;

  beforeAll(async () => {
    pymodbus = await startPymodbus();
    silent = await startStub(() => {}); // accepts, reads, never answers
  }, 15_000);
  afterAll(async () => {
    await pymodbus?.stop();
    await silent?.stop();
  });

  it('identifies units by 43/14, falls back to registers when 43/14 is refused, and skips a silent unit', async () => {
    const { devices } = await firstList({
      hosts: [`127.0.0.1:${pymodbus.port}`],
      unitIds: [1, 2, 3, 9],
      registers: [
        { name: 'voltage', address: 0 },
        { name: 'pair', address: 1, count: 2 },
      ],
      timeoutMs: 1_000,
    });
    // Unit 9 is not served: pymodbus drops its requests, so it costs one timeout.
    const endpoint = `tcp://127.0.0.1:${pymodbus.port}`;
    expect(devices.map((d) => d.id)).toEqual([`${endpoint}/1`, `${endpoint}/2`, `${endpoint}/3`]);
    expect(devices[0]!.properties).toEqual({
      MODBUS_ENDPOINT: endpoint,
      MODBUS_HOST: '127.0.0.1',
      MODBUS_PORT: String(pymodbus.port),
      MODBUS_UNIT_ID: '1',
      MODBUS_VENDOR: 'Pymodbus Works',
      MODBUS_PRODUCT_CODE: 'PM-3000',
      MODBUS_REVISION: '3.0.0',
      MODBUS_REGISTER_VOLTAGE: '230',
      MODBUS_REGISTER_PAIR: '1,2',
    });
    expect(devices[1]!.properties.MODBUS_REGISTER_VOLTAGE).toBe('400');
    // Unit 3 refuses 43/14 (illegal function): found by its registers alone.
    expect(devices[2]!.properties).toMatchObject({ MODBUS_UNIT_ID: '3', MODBUS_REGISTER_VOLTAGE: '777' });
    expect(devices[2]!.properties.MODBUS_VENDOR).toBeUndefined();
  }, 15_000);

  it('a host that never answers and a refused port cost one timeout each, beside a live server', async () => {
    const refused = await freePort();
    const { devices, ms } = await firstList({
      hosts: [`127.0.0.1:${silent.port}`, `127.0.0.1:${refused}`, `127.0.0.1:${pymodbus.port}`],
      unitIds: [1, 2],
      timeoutMs: 300,
      concurrency: 3,
    });
    expect(devices.map((d) => d.properties.MODBUS_PORT)).toEqual([
      String(pymodbus.port),
      String(pymodbus.port),
    ]);
    // The silent host's two units time out one after the other (2 × 300 ms), in parallel with the rest.
    expect(ms).toBeLessThan(2_000);
  }, 10_000);

  it('a scan of many silent units is cut at scanTimeoutMs', async () => {
    const { devices, ms } = await firstList({
      hosts: [`127.0.0.1:${silent.port}`],
      unitIdRange: { first: 1, last: 200 },
      timeoutMs: 200,
      scanTimeoutMs: 600,
    });
    expect(devices).toEqual([]);
    expect(ms).toBeGreaterThanOrEqual(550);
    expect(ms).toBeLessThan(1_500);
  }, 10_000);
});
