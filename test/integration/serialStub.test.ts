import { lstat, readlink, symlink } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulateSerial } from '../../firmware-stubs/serial/cli.js';
import { serialStubMode, startSerialSensorStub } from '../../firmware-stubs/serial/sensorStub.js';
import { converse, makeSerialTempDir, serialTestLogger } from '../helpers/serialHarness.js';

const logger = serialTestLogger();
let temp: Awaited<ReturnType<typeof makeSerialTempDir>>;
beforeAll(async () => {
  temp = await makeSerialTempDir();
});
afterAll(async () => {
  await temp.remove();
});

describe('serial sensor stub (real pseudo-terminals via socat)', () => {
  it('answers the ID? probe and streams readings; stop removes its symlink', { timeout: 6_000 }, async () => {
    const stub = await startSerialSensorStub({
      dir: temp.dir,
      name: 'ttyS1',
      model: 'TH-9',
      serial: 'ABC123',
      readingIntervalMs: 100,
      logger,
    });
    try {
      expect(await readlink(stub.devicePath)).toBe(stub.nodePath);
      const id = await converse(stub.devicePath, 'ID?\r\n', /LEAFBRIDGE-SENSOR.*\r\n/);
      expect(id).toContain('LEAFBRIDGE-SENSOR,TH-9,ABC123\r\n');
      const readings = await converse(stub.devicePath, '', /(T=21\.5\r\n.*){2}/s);
      expect(readings).toMatch(/T=21\.5\r\nT=21\.5\r\n/);
    } finally {
      await stub.stop();
    }
    await expect(lstat(stub.devicePath)).rejects.toThrow(/ENOENT/);
  });

  it('modem mode answers ATI with OK and the sensor probe with ERROR', { timeout: 6_000 }, async () => {
    const stub = await startSerialSensorStub({
      dir: temp.dir,
      name: 'ttyM1',
      mode: serialStubMode.modem,
      logger,
    });
    try {
      expect(await converse(stub.devicePath, 'ATI\r', /\r\n/)).toBe('OK\r\n');
      expect(await converse(stub.devicePath, 'ID?\r\n', /\r\n/)).toBe('ERROR\r\n');
    } finally {
      await stub.stop();
    }
  });

  it('garbage mode spews bytes with no line ends and ignores commands', { timeout: 9_000 }, async () => {
    const stub = await startSerialSensorStub({
      dir: temp.dir,
      name: 'ttyG1',
      mode: serialStubMode.garbage,
      logger,
    });
    try {
      // 8 KiB takes the stub well under a second; the deadline leaves room for a loaded CI machine.
      const bytes = await converse(stub.devicePath, 'ID?\r\n', /[\s\S]{8192}/, 6_000);
      expect(bytes.length).toBeGreaterThanOrEqual(8192);
      expect(bytes).not.toMatch(/[\r\n]|LEAFBRIDGE/);
    } finally {
      await stub.stop();
    }
  });

  it('refuses a device path that is in use, replaces a dangling one', { timeout: 6_000 }, async () => {
    const first = await startSerialSensorStub({ dir: temp.dir, name: 'ttyDup', logger });
    try {
      await expect(startSerialSensorStub({ dir: temp.dir, name: 'ttyDup', logger })).rejects.toMatchObject({
        code: 'SERIAL_STUB_PATH_IN_USE',
      });
    } finally {
      await first.stop();
    }
    await symlink('/dev/pts/no-such-pty', `${temp.dir}/ttyStale`);
    const second = await startSerialSensorStub({ dir: temp.dir, name: 'ttyStale', logger });
    await second.stop();
  });

  it('simulateSerial starts --count stubs, prints their paths, and stop removes them', {
    timeout: 8_000,
  }, async () => {
    const out = new PassThrough();
    let printed = '';
    out.on('data', (b: Buffer) => {
      printed += b.toString();
    });
    const sim = await simulateSerial(
      ['--dir', temp.dir, '--count', '2', '--serial', 'SIM', '--interval', '0'],
      logger,
      out,
    );
    try {
      expect(printed.trim().split('\n')).toEqual([`${temp.dir}/ttyLB0`, `${temp.dir}/ttyLB1`]);
      expect(await converse(`${temp.dir}/ttyLB1`, 'ID?\r\n', /\r\n/)).toBe(
        'LEAFBRIDGE-SENSOR,TH-100,SIM-1\r\n',
      );
    } finally {
      await sim.stop();
    }
    for (const path of sim.devicePaths) await expect(lstat(path)).rejects.toThrow(/ENOENT/);
  });

  it('simulateSerial rejects bad flags with a USAGE error', async () => {
    await expect(simulateSerial(['--mode', 'toaster'], logger)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(simulateSerial(['--count', '0'], logger)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(simulateSerial(['--bogus'], logger)).rejects.toMatchObject({ code: 'USAGE' });
  });
});
