import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DebugEchoDetails, debugEchoHandler } from '../../discovery-handlers/debugEcho/index.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { DiscoveryRun } from '../helpers/serialHarness.js';

const devices: DiscoveredDevice[] = [
  { id: 'echo-a', properties: { ECHO_NAME: 'a' } },
  { id: 'echo-b', properties: { ECHO_NAME: 'b' } },
  { id: 'echo-c', properties: {} },
];

let dir: string;
let runs: DiscoveryRun<typeof debugEchoHandler>[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lb-echo-'));
  runs = [];
});
afterEach(async () => {
  await Promise.all(runs.map((r) => r.stop()));
  await rm(dir, { recursive: true, force: true });
});

function discover(details: DebugEchoDetails, node?: string) {
  const run = new DiscoveryRun(debugEchoHandler, details, undefined, undefined, node);
  runs.push(run);
  return run;
}

const ids = (list: DiscoveredDevice[]) => list.map((d) => d.id).join(',');
const exactly = (expected: string) => (list: DiscoveredDevice[]) => ids(list) === expected;

describe('debug-echo discovery handler', () => {
  it('lists the devices of its details, with their properties', { timeout: 5_000 }, async () => {
    const run = discover({ devices });
    const first = await run.waitFor((d) => d.length === 3, 1_000);
    expect(first.devices).toEqual(devices);
  });

  it('follows edits of the presence file within 1 s; a missing file means all present', {
    timeout: 10_000,
  }, async () => {
    const file = join(dir, 'present');
    const run = discover({ devices, presenceFile: file, pollIntervalMs: 60_000 });
    await run.waitFor(exactly('echo-a,echo-b,echo-c'), 1_000);

    const steps: [string, () => Promise<void>, string][] = [
      ['write one id', () => writeFile(file, 'echo-b\n'), 'echo-b'],
      ['add one', () => writeFile(file, 'echo-b\necho-a\nnot-listed\n'), 'echo-a,echo-b'],
      ['empty the file', () => writeFile(file, ''), ''],
      ['write two', () => writeFile(file, 'echo-c\n\n  echo-a  \n'), 'echo-a,echo-c'],
      ['delete the file', () => unlink(file), 'echo-a,echo-b,echo-c'],
    ];
    const figures: string[] = [];
    for (const [what, edit, expected] of steps) {
      const t0 = Date.now();
      await edit();
      const seen = await run.waitFor(exactly(expected), 1_000);
      expect(seen.at - t0).toBeLessThan(1_000);
      figures.push(`${what} ${seen.at - t0} ms`);
    }
    console.info(`debug-echo: edit→list ${figures.join(', ')}`);
  });

  it('reads the presence file of its own node: `{node}` in the path is the node name', {
    timeout: 5_000,
  }, async () => {
    await writeFile(join(dir, 'present-edge-1'), 'echo-a\n');
    await writeFile(join(dir, 'present-edge-2'), 'echo-c\n');
    await writeFile(join(dir, 'present-{node}'), 'echo-b\n');
    const details = { devices, presenceFile: join(dir, 'present-{node}'), pollIntervalMs: 60_000 };
    await discover(details, 'edge-1').waitFor(exactly('echo-a'), 1_000);
    await discover(details, 'edge-2').waitFor(exactly('echo-c'), 1_000);
  });

  it('falls back to polling where there is nothing to watch yet', { timeout: 5_000 }, async () => {
    const sub = join(dir, 'later');
    const file = join(sub, 'present');
    const run = discover({ devices, presenceFile: file, pollIntervalMs: 200 });
    await run.waitFor((d) => d.length === 3, 1_000);
    await mkdir(sub);
    await writeFile(file, 'echo-c\n');
    await run.waitFor(exactly('echo-c'), 1_000);
  });
});
