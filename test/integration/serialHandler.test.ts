import { symlink, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSerialHandler, serialHandler } from '../../discovery-handlers/serial/handler.js';
import { probePort } from '../../discovery-handlers/serial/probe.js';
import type { SerialDetails } from '../../discovery-handlers/serial/schema.js';
import {
  type SerialSensorStub,
  type SerialSensorStubOptions,
  serialStubMode,
  startSerialSensorStub,
} from '../../firmware-stubs/serial/sensorStub.js';
import { systemClock } from '../../src/util/clock.js';
import { LinearRegex } from '../../src/util/linearRegex.js';
import { byPath, DiscoveryRun, makeSerialTempDir, serialTestLogger } from '../helpers/serialHarness.js';

const logger = serialTestLogger();
const sensorProbe = { write: 'ID?\\r\\n', expect: '^LEAFBRIDGE-SENSOR,[^,]+,\\S+', timeoutMs: 600 };

let temp: Awaited<ReturnType<typeof makeSerialTempDir>>;
let stubs: SerialSensorStub[];
let runs: DiscoveryRun<typeof serialHandler>[];

beforeEach(async () => {
  temp = await makeSerialTempDir();
  stubs = [];
  runs = [];
});
afterEach(async () => {
  await Promise.all(runs.map((r) => r.stop()));
  await Promise.all(stubs.map((s) => s.stop()));
  await temp.remove();
});

async function stub(name: string, options: Partial<SerialSensorStubOptions> = {}): Promise<SerialSensorStub> {
  const s = await startSerialSensorStub({ dir: temp.dir, name, logger, readingIntervalMs: 200, ...options });
  stubs.push(s);
  return s;
}

function discover(details: SerialDetails): DiscoveryRun<typeof serialHandler> {
  // A fake, empty sysfs: no machine-specific USB identity leaks into the assertions.
  const handler = createSerialHandler({ roots: { sysfsRoot: temp.dir, udevDataDir: temp.dir } });
  const run = new DiscoveryRun(handler, details, logger);
  runs.push(run);
  return run;
}

describe('serial discovery handler on real pseudo-terminals', () => {
  it('lists a sensor within 2 s of its symlink appearing and drops it within 2 s of removal', {
    timeout: 10_000,
  }, async () => {
    const run = discover({ paths: [`${temp.dir}/tty*`], probe: sensorProbe });
    await run.waitFor((d) => d.length === 0, 2_000);

    const t0 = Date.now();
    const sensor = await stub('ttyLB0', { model: 'TH-7', serial: 'S-0042' });
    const appeared = Date.now();
    const found = await run.waitFor(byPath(sensor.devicePath), 2_000);
    const device = found.devices[0];
    expect(device).toEqual({
      id: sensor.nodePath,
      properties: {
        SERIAL_DEVICE_PATH: sensor.devicePath,
        SERIAL_PROBE_REPLY: 'LEAFBRIDGE-SENSOR,TH-7,S-0042',
      },
      deviceNodes: [{ hostPath: sensor.nodePath, containerPath: sensor.devicePath, permissions: 'rw' }],
    });
    expect(found.at - appeared).toBeLessThan(2_000);

    const t1 = Date.now();
    await sensor.stop();
    const gone = await run.waitFor((d) => d.length === 0, 2_000);
    expect(gone.at - t1).toBeLessThan(2_000);
    console.info(
      `serial: stub start→listed ${found.at - t0} ms (symlink→listed ${found.at - appeared} ms); stop→gone ${gone.at - t1} ms`,
    );
  });

  it('a device that dies (pty gone, symlink left dangling) is dropped within 2 s', {
    timeout: 10_000,
  }, async () => {
    const sensor = await stub('ttyLB1');
    const run = discover({ paths: [`${temp.dir}/tty*`], probe: sensorProbe });
    await run.waitFor(byPath(sensor.devicePath), 2_000);
    const t0 = Date.now();
    await sensor.crash();
    const gone = await run.waitFor((d) => d.length === 0, 2_000);
    expect(gone.at - t0).toBeLessThan(2_000);
    console.info(`serial: crash (socat SIGKILL, dangling symlink)→gone ${gone.at - t0} ms`);
  });

  it('the probe tells the sensor from the modem, and an AT probe the other way round', {
    timeout: 10_000,
  }, async () => {
    const sensor = await stub('ttySensor');
    const modem = await stub('ttyModem', { mode: serialStubMode.modem });
    const paths = [`${temp.dir}/tty*`];
    const pathsOf = (s: { devices: { properties: Record<string, string> }[] }) =>
      s.devices.map((d) => d.properties.SERIAL_DEVICE_PATH);

    // The first list comes from a scan that probed both ports.
    const sensors = discover({ paths, probe: sensorProbe });
    expect(pathsOf(await sensors.waitFor(() => true, 3_000))).toEqual([sensor.devicePath]);
    await sensors.stop();

    const modems = discover({ paths, probe: { write: 'ATI\\r', expect: '^OK$', timeoutMs: 600 } });
    const modemFirst = await modems.waitFor(() => true, 3_000);
    expect(pathsOf(modemFirst)).toEqual([modem.devicePath]);
    expect(modemFirst.devices[0]?.properties.SERIAL_PROBE_REPLY).toBe('OK');
  });

  it('two configs probing the same ports at once both find their device (lock contention is retried)', {
    timeout: 10_000,
  }, async () => {
    const sensor = await stub('ttySensor');
    const modem = await stub('ttyModem', { mode: serialStubMode.modem });
    const paths = [`${temp.dir}/tty*`];
    const started = Date.now();
    const sensors = discover({ paths, probe: sensorProbe });
    const modems = discover({ paths, probe: { write: 'ATI\\r', expect: '^OK$', timeoutMs: 600 } });
    const [s, m] = await Promise.all([
      sensors.waitFor(byPath(sensor.devicePath), 4_000),
      modems.waitFor(byPath(modem.devicePath), 4_000),
    ]);
    expect(s.devices).toHaveLength(1);
    expect(m.devices).toHaveLength(1);
    console.info(`serial: two concurrent configs settled in ${Math.max(s.at, m.at) - started} ms`);
  });

  it('rejects a garbage-spewing port within its timeout and still finds the others', {
    timeout: 10_000,
  }, async () => {
    const garbage = await stub('ttyJunk', { mode: serialStubMode.garbage });
    const sensor = await stub('ttyGood');
    const started = Date.now();
    const run = discover({ paths: [`${temp.dir}/tty*`], probe: { ...sensorProbe, timeoutMs: 1_000 } });
    const first = await run.waitFor(() => true, 3_000);
    expect(first.devices.map((d) => d.properties.SERIAL_DEVICE_PATH)).toEqual([sensor.devicePath]);
    expect(first.at - started).toBeLessThan(1_000 + 500);

    // The same port probed directly: the reply buffer stops at maxBytes, and the heap does not grow with
    // what the port keeps sending.
    const heapBefore = process.memoryUsage().heapUsed;
    const signal = new AbortController().signal;
    const request = {
      path: garbage.devicePath,
      write: Buffer.from('ID?\r\n'),
      expect: LinearRegex.compile('LEAFBRIDGE-SENSOR'),
      timeoutMs: 1_000,
      baudRate: 9600,
      maxBytes: 4_096,
    };
    for (let i = 0; i < 10; i++) {
      const result = await probePort(request, { clock: systemClock, signal });
      expect(result).toMatchObject({ ok: false, reason: 'overflow', bytes: 4_096 });
      expect(result.elapsedMs).toBeLessThan(1_000);
    }
    const growth = process.memoryUsage().heapUsed - heapBefore;
    expect(growth).toBeLessThan(16 * 1024 * 1024);
    console.info(
      `serial: first list with a garbage port ${first.at - started} ms; heap growth over 10 garbage probes ${(growth / 1024).toFixed(0)} KiB`,
    );
  });

  it('a port that vanishes mid-probe fails the probe at once, and discovery goes on', {
    timeout: 10_000,
  }, async () => {
    const modem = await stub('ttyGone', { mode: serialStubMode.modem });
    const started = Date.now();
    setTimeout(() => void modem.stop(), 200);
    const result = await probePort(
      {
        path: modem.devicePath,
        write: Buffer.from('ID?\r\n'),
        expect: LinearRegex.compile('X'),
        timeoutMs: 3_000,
        baudRate: 9600,
        maxBytes: 64,
      },
      { clock: systemClock, signal: new AbortController().signal },
    );
    expect(result).toMatchObject({ ok: false, reason: 'error' });
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('skips what is not a serial port without failing, and lists ports with no probe', {
    timeout: 10_000,
  }, async () => {
    await writeFile(`${temp.dir}/ttyFile`, 'not a device');
    await symlink('/dev/pts/no-such-pty', `${temp.dir}/ttyDangling`);
    const sensor = await stub('ttyPlain', { readingIntervalMs: 0 });
    const run = discover({ paths: [`${temp.dir}/tty*`, `${temp.dir}/nothing/*`] });
    const first = await run.waitFor(() => true, 2_000);
    expect(first.devices).toEqual([
      {
        id: sensor.nodePath,
        properties: { SERIAL_DEVICE_PATH: sensor.devicePath },
        deviceNodes: [{ hostPath: sensor.nodePath, containerPath: sensor.devicePath, permissions: 'rw' }],
      },
    ]);
  });

  it('a bad probe pattern ends discovery with a clear error', async () => {
    const run = discover({ paths: [`${temp.dir}/tty*`], probe: { write: 'x', expect: '(' } });
    await expect(run.waitFor(() => true, 1_000)).rejects.toThrow();
    expect(run.error).toMatchObject({ code: 'SERIAL_BAD_PATTERN' });
  });

  it('is registered as a local handler named serial', () => {
    expect(serialHandler.name).toBe('serial');
    expect(serialHandler.shared).toBe(false);
  });
});
