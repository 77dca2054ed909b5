import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firstList, startPtyPair, startPymodbusRtu } from '../helpers/modbusPeers.js';
import { tempDir } from '../helpers/processes.js';

/** The modbus handler as an RTU master on a pty, against pymodbus's serial server on the other end. */
describe('modbus RTU discovery against pymodbus', () => {
  const dir = tempDir('lb-modbus-rtu-');
  const serverEnd = join(dir.path, 'server');
  const clientEnd = join(dir.path, 'client');
  let pty: Awaited<ReturnType<typeof startPtyPair>>;
  let server: Awaited<ReturnType<typeof startPymodbusRtu>>;

  beforeAll(async () => {
    pty = await startPtyPair(serverEnd, clientEnd);
    server = await startPymodbusRtu(serverEnd);
  }, 15_000);
  afterAll(async () => {
    await server?.stop();
    await pty?.stop();
    dir.remove();
  });

  const details = {
    serialPorts: [{ path: clientEnd, baudRate: 9600, parity: 'none' as const }],
    unitIds: [1, 3, 9],
    registers: [{ name: 'voltage', address: 0 }],
    timeoutMs: 500,
  };

  it('finds units by 43/14 or by registers, with the port as a device node', async () => {
    const ptyPath = realpathSync(clientEnd);
    const { devices } = await firstList(details, ['/dev/pts/']);
    expect(devices.map((d) => d.id)).toEqual([`rtu://${clientEnd}/1`, `rtu://${clientEnd}/3`]);
    expect(devices[0]).toEqual({
      id: `rtu://${clientEnd}/1`,
      properties: {
        MODBUS_ENDPOINT: `rtu://${clientEnd}`,
        MODBUS_SERIAL_PORT: clientEnd,
        MODBUS_UNIT_ID: '1',
        MODBUS_VENDOR: 'Pymodbus Works',
        MODBUS_PRODUCT_CODE: 'PM-3000',
        MODBUS_REVISION: '3.0.0',
        MODBUS_REGISTER_VOLTAGE: '230',
      },
      deviceNodes: [{ hostPath: ptyPath, containerPath: clientEnd, permissions: 'rw' }],
    });
    expect(devices[1]!.properties).toMatchObject({ MODBUS_UNIT_ID: '3', MODBUS_REGISTER_VOLTAGE: '777' });
  }, 10_000);

  it('writes nothing to a port outside the agent’s probeWritePaths', async () => {
    const { devices } = await firstList(details, ['/dev/ttyUSB']);
    expect(devices).toEqual([]);
  }, 10_000);
});
