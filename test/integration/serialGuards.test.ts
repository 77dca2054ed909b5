import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileIdFilter } from '../../discovery-handlers/mqtt/filter.js';
import { createSerialHandler, type serialHandler } from '../../discovery-handlers/serial/handler.js';
import type { SerialDetails } from '../../discovery-handlers/serial/schema.js';
import { type SerialSensorStub, startSerialSensorStub } from '../../firmware-stubs/serial/sensorStub.js';
import { createLogger, type Logger } from '../../src/util/logger.js';
import { byPath, DiscoveryRun, makeSerialTempDir } from '../helpers/serialHarness.js';

/**
 * What a DiscoveryConfig (anyone with write rights on the API can make one) may not do to the agent:
 * stall it with a pattern, or make it write bytes to device files the agent's own config does not allow.
 */

/** A logger whose JSON lines the test reads. */
function capturedLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => text.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
  const logger = createLogger({ level: 'debug', destination: stream });
  return { logger, lines: () => text.map((t) => JSON.parse(t) as Record<string, unknown>) };
}

/** The longest gap between timer ticks while `during` runs: how long the event loop was blocked. */
async function longestStall<T>(during: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let last = Date.now();
  let stallMs = 0;
  const ticker = setInterval(() => {
    const now = Date.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 10);
  try {
    return { result: await during(), stallMs };
  } finally {
    clearInterval(ticker);
  }
}

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

function discover(details: SerialDetails, logger: Logger, probeWritePaths?: string[]) {
  const handler = createSerialHandler({ roots: { sysfsRoot: temp.dir, udevDataDir: temp.dir } });
  const run = new DiscoveryRun(handler, details, logger, probeWritePaths);
  runs.push(run);
  return run;
}

describe('patterns from configs run in linear time', () => {
  it('a catastrophic-backtracking probe.expect does not stall discovery or the event loop', {
    timeout: 20_000,
  }, async () => {
    const { logger } = capturedLogger();
    // The reply `LEAFBRIDGE-SENSOR,TH-7777…,S-0042` is a long run the group can split 2^n ways, and `!`
    // never comes: V8's backtracking engine would take minutes; RE2's automaton answers at once.
    const evil = '^([A-Z0-9,-]+)+!';
    const sensor = await startSerialSensorStub({
      dir: temp.dir,
      name: 'ttyEVIL',
      model: `TH-${'7'.repeat(40)}`,
      serial: 'S-0042',
      readingIntervalMs: 0,
      logger,
    });
    stubs.push(sensor);
    const { result, stallMs } = await longestStall(async () => {
      const started = Date.now();
      const evilRun = discover(
        { paths: [`${temp.dir}/tty*`], probe: { write: 'ID?\\r\\n', expect: evil, timeoutMs: 600 } },
        logger,
      );
      const goodRun = discover(
        {
          paths: [`${temp.dir}/tty*`],
          probe: { write: 'ID?\\r\\n', expect: '^LEAFBRIDGE-SENSOR,', timeoutMs: 600 },
        },
        logger,
      );
      await goodRun.waitFor(byPath(sensor.devicePath), 5_000);
      const none = await evilRun.waitFor((d) => d.length === 0, 5_000);
      return { elapsedMs: Date.now() - started, evilListed: none.devices.length };
    });
    expect(result.evilListed).toBe(0);
    expect(result.elapsedMs).toBeLessThan(5_000);
    expect(stallMs).toBeLessThan(500);
    // For comparison (measured, not run here): V8's RegExp takes ~31 s for /^(a+)+$/ on 28 a's and a `!`.
    console.info(`serial: evil pattern settled in ${result.elapsedMs} ms (longest loop stall ${stallMs} ms)`);
  });

  it('MQTT id globs with many stars match long ids at once', () => {
    const filter = compileIdFilter({ include: [`${'*a'.repeat(12)}*b`] });
    const started = Date.now();
    expect(filter('a'.repeat(5_000))).toBe(false);
    expect(filter(`${'a'.repeat(20)}b`)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe('serial probes write only under the agent\u2019s discovery.probeWritePaths', () => {
  it('a port outside the allowed prefixes is not probed (no bytes written, not listed) and is logged once', {
    timeout: 15_000,
  }, async () => {
    const captured = capturedLogger();
    const sensor = await startSerialSensorStub({
      dir: temp.dir,
      name: 'ttyLB0',
      readingIntervalMs: 0,
      logger: captured.logger,
    });
    stubs.push(sensor);
    const details = {
      paths: [`${temp.dir}/tty*`],
      probe: { write: 'ID?\\r\\n', expect: '^LEAFBRIDGE-SENSOR,', timeoutMs: 600 },
      rescanIntervalMs: 1_000,
    };
    // The agent's default: USB serial adapters only; the stub is a pseudo-terminal.
    const refused = discover(details, captured.logger, ['/dev/ttyUSB', '/dev/ttyACM']);
    await refused.waitFor((d) => d.length === 0, 3_000);
    await new Promise((r) => setTimeout(r, 2_500)); // two more scans
    expect(refused.latest).toEqual([]);
    const lines = captured.lines();
    const refusals = lines.filter((l) => String(l.msg).startsWith('probe refused'));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ realPath: sensor.nodePath, path: sensor.devicePath });
    // Not one probe was made: no verdict of any kind was logged.
    expect(lines.filter((l) => /^probe (matched|failed|could not run)/.test(String(l.msg)))).toEqual([]);

    // The same config with the pty allowed finds the sensor: the refusal above was the prefix, nothing else.
    const allowed = discover(details, captured.logger, [sensor.nodePath]);
    await allowed.waitFor(byPath(sensor.devicePath), 3_000);
  });
});
