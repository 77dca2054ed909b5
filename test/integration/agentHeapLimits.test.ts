import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENT_MALLOC_ARENA_MAX, AGENT_NODE_FLAGS } from '../../src/cli/runtime.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { type AgentProcess, ROOT, startAgent, stopProcess, tempDir } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/** The children of a process, from /proc. */
function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

/** A process's MALLOC_ARENA_MAX, from its environment as it started. */
function arenaMax(pid: number): string | undefined {
  const entry = readFileSync(`/proc/${pid}/environ`, 'utf8')
    .split('\0')
    .find((e) => e.startsWith('MALLOC_ARENA_MAX='));
  return entry?.slice('MALLOC_ARENA_MAX='.length);
}

function alive(pid: number): boolean {
  try {
    // A zombie still has a /proc entry; it is gone for our purpose.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

describe('leafbridge agent sets its own heap limits', { timeout: 60_000 }, () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(): Promise<{ agent: AgentProcess; worker: number }> {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const agent = await startAgent(dir.path, agentConfig(`${dir.path}/data`, undefined));
    cleanups.push(() => stopProcess(agent.child, 'SIGKILL'));
    const parent = agent.child.pid as number;
    const [worker] = childrenOf(parent);
    expect(worker).toBeDefined();
    cleanups.push(() => {
      if (alive(worker as number)) process.kill(worker as number, 'SIGKILL');
    });
    return { agent, worker: worker as number };
  }

  it('runs the agent in a child started with the heap flags; SIGTERM reaches it and the exit status comes back', async () => {
    const { agent, worker } = await start();
    const argv = readFileSync(`/proc/${worker}/cmdline`, 'utf8').split('\0');
    for (const flag of AGENT_NODE_FLAGS) expect(argv).toContain(flag);
    expect(arenaMax(worker)).toBe(AGENT_MALLOC_ARENA_MAX);
    expect(await stopProcess(agent.child, 'SIGTERM')).toBe(0);
    expect(agent.stdout.join('')).toContain('"msg":"agent stopped"');
    await until(() => !alive(worker), 5_000, 'the agent process to exit');
  });

  /** The agent started through the installed command, and the command line its process runs. */
  async function startThroughLauncher(env: NodeJS.ProcessEnv = process.env) {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const launcher = join(ROOT, 'bin/leafbridge');
    const agent = await startAgent(dir.path, agentConfig(`${dir.path}/data`, undefined), {
      wrap: (argv) => [launcher, ...argv.slice(2)],
      env,
    });
    cleanups.push(() => stopProcess(agent.child, 'SIGKILL'));
    const pid = agent.child.pid as number;
    return { agent, pid, argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0') };
  }

  it('the installed command (bin/leafbridge) execs node with the heap flags: the agent is one process', async () => {
    const { agent, pid, argv } = await startThroughLauncher();
    expect(argv.slice(1, 1 + AGENT_NODE_FLAGS.length)).toEqual([...AGENT_NODE_FLAGS]);
    expect(childrenOf(pid)).toEqual([]); // no relaunch: the flags were there from the start
    expect(arenaMax(pid)).toBe(AGENT_MALLOC_ARENA_MAX);
    expect(await stopProcess(agent.child, 'SIGTERM')).toBe(0);
    expect(agent.stdout.join('')).toContain('"msg":"agent stopped"');
  });

  it('heap flags in NODE_OPTIONS win over the launcher’s', async () => {
    const { pid, argv } = await startThroughLauncher({
      ...process.env,
      NODE_OPTIONS: '--max-old-space-size=200',
    });
    for (const flag of AGENT_NODE_FLAGS) expect(argv).not.toContain(flag);
    expect(childrenOf(pid)).toEqual([]);
  });

  it('a MALLOC_ARENA_MAX in the environment wins over the launcher’s', async () => {
    const { pid } = await startThroughLauncher({ ...process.env, MALLOC_ARENA_MAX: '4' });
    expect(arenaMax(pid)).toBe('4');
  });

  it('a SIGKILLed parent takes the agent with it', async () => {
    const { agent, worker } = await start();
    await stopProcess(agent.child, 'SIGKILL');
    await until(() => !alive(worker), 5_000, 'the agent process to exit');
    expect(alive(worker)).toBe(false);
  });
});
