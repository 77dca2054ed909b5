import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { agentConfig } from '../helpers/agentConfig.js';
import { CLI, startAgent, stopProcess, tempDir } from '../helpers/processes.js';

describe('one agent per data directory', { timeout: 60_000 }, () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('a second agent on the same dataDir stops with STORE_IN_USE, one line and no stack; the first keeps running', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const dataDir = join(dir.path, 'data');
    const first = await startAgent(dir.path, agentConfig(dataDir, undefined));
    cleanups.push(() => stopProcess(first.child, 'SIGKILL'));

    const file = join(dir.path, 'second.yaml');
    writeFileSync(file, stringify(agentConfig(dataDir, undefined)));
    const second = spawn(process.execPath, [CLI, 'agent', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => stopProcess(second, 'SIGKILL'));
    let stderr = '';
    second.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => second.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(stderr).toContain(
      `leafbridge: STORE_IN_USE: ${join(dataDir, 'leafbridge.db')} is in use by another process`,
    );
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(first.child.exitCode).toBeNull();
    const health = await fetch(`http://${first.http.host}:${first.http.port}/healthz`);
    expect(health.status).toBe(200);
  });
});
