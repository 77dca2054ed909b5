import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, waitForLine } from '../helpers/processes.js';

/**
 * docs/operations.md: SIGTERM or SIGINT stops the agent (and the hub, and the controller); if that takes over
 * 5 s the process exits 1. Each case is a real process receiving a real signal, running the built
 * `runUntilSignal` that `leafbridge agent` and `leafbridge hub` run, around a stop the case chooses.
 */

const SHUTDOWN = join(ROOT, 'dist/src/cli/shutdown.js');
const LOGGER = join(ROOT, 'dist/src/util/logger.js');

/** Starts a process whose stop is `stop` (JavaScript returning a promise); resolves with its exit and log. */
function processWithStop(stop: string) {
  const script = `import { runUntilSignal } from ${JSON.stringify(SHUTDOWN)};
    import { createLogger } from ${JSON.stringify(LOGGER)};
    const logger = createLogger({ level: 'info' });
    const keepAlive = setInterval(() => {}, 60_000);
    const stopped = runUntilSignal(logger, async () => { clearInterval(keepAlive); await (${stop})(); });
    // Only now: the line leaves at once, and a signal sent before the handlers are in would kill the process.
    logger.info('ready');
    await stopped;
    logger.info('stopped');`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH },
  });
  const lines: Record<string, unknown>[] = [];
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    const parts = out.split('\n');
    out = parts.pop() ?? '';
    for (const p of parts) if (p) lines.push(JSON.parse(p));
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, messages: () => lines.map((l) => l.msg) };
}

describe('stopping on SIGTERM or SIGINT', () => {
  it.concurrent('a stop that never finishes: the process exits 1 five seconds after SIGTERM, saying why', async () => {
    // Hung as a real stop hangs: waiting on something that keeps the process alive (a socket, a timer).
    const p = processWithStop('() => new Promise(() => setInterval(() => {}, 60_000))');
    await waitForLine(p.child, (l) => l.msg === 'ready');
    const signalled = performance.now();
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(1);
    // Not before the grace period (the lower bound only: the upper one is the test's own timeout).
    expect(performance.now() - signalled).toBeGreaterThanOrEqual(4_900);
    expect(p.messages()).toEqual(['ready', 'shutting down', 'shutdown took over 5 s; exiting']);
  }, 20_000);

  it.concurrent('a stop that finishes: SIGINT, the stop runs, the process exits 0 (the guard does not hold it)', async () => {
    const p = processWithStop('() => new Promise((r) => setTimeout(r, 200))');
    await waitForLine(p.child, (l) => l.msg === 'ready');
    p.child.kill('SIGINT');
    expect(await p.exited).toBe(0);
    expect(p.messages()).toEqual(['ready', 'shutting down', 'stopped']);
  }, 20_000);

  it.concurrent('a stop that finishes but leaves something open: the process exits 1 at the grace period instead of lingering', async () => {
    const p = processWithStop('async () => { setInterval(() => {}, 60_000); }');
    await waitForLine(p.child, (l) => l.msg === 'ready');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(1);
    expect(p.messages()).toEqual(['ready', 'shutting down', 'stopped', 'shutdown took over 5 s; exiting']);
  }, 20_000);

  it.concurrent('a stop that fails: logged, and the process exits 0 once nothing is left open', async () => {
    const p = processWithStop("async () => { throw new Error('disk gone'); }");
    await waitForLine(p.child, (l) => l.msg === 'ready');
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.messages()).toEqual(['ready', 'shutting down', 'shutdown failed', 'stopped']);
  }, 20_000);
});
