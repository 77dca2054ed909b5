import { spawn } from 'node:child_process';

/**
 * The Node.js heap limits the agent runs with (V8 takes them only at start-up, so `leafbridge agent` starts itself
 * again with them: see `relaunchWithHeapLimits`). Measured under the edge bench's fast shape: Node's defaults
 * ~230 MB peak; semi-space 8 MB + old space 96 MB ~128 MB; 4 + 64 ~114 MB at the same CPU per message, but 3,000
 * connections then cost ~25% more CPU in GC and one run of two failed, so the old space keeps 96 MB of headroom.
 * Semi-spaces of 2 MB against 4 (docs/performance.md, eighth round): ~3 MB less peak under the fast shape, the
 * same CPU in both shapes.
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=96'] as const;

/**
 * glibc's malloc arenas for the agent (MALLOC_ARENA_MAX, read at process start): by default each thread that
 * allocates may get one of its own (up to 8 a core), and V8's worker threads do. Two took 4–7 MB off the agent's
 * idle and peak RSS in the edge bench's slow shape at the same CPU (`MALLOC_ARENA_MAX=2 node
 * bench/probes/slowShape.mjs agent 3000 20` against it unset). A value in the environment wins.
 */
export const AGENT_MALLOC_ARENA_MAX = '2';

const RELAUNCHED = 'LEAFBRIDGE_RELAUNCHED';
const HEAP_FLAG = /^--max-(old-space|semi-space|heap)-size\b/;

/** Heap flags someone already chose, on the command line or in NODE_OPTIONS: theirs win. */
function heapFlagsGiven(): boolean {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return given.some((f) => HEAP_FLAG.test(f));
}

/**
 * `leafbridge agent` without heap flags runs the agent in a child Node process that has them, and stays as a thin
 * parent (~7 MB of its own memory): signals go to the child, the child's exit status becomes the parent's, and
 * the child dies with the parent (a SIGKILLed parent takes the agent with it, as a SIGKILLed agent would go).
 * Returns false when this process should run the command itself.
 */
export function relaunchWithHeapLimits(argv: readonly string[]): boolean {
  if (process.env[RELAUNCHED] === '1') {
    delete process.env[RELAUNCHED];
    watchParent();
    return false;
  }
  if (argv[2] !== 'agent' || heapFlagsGiven()) return false;
  const child = spawn(process.execPath, [...process.execArgv, ...AGENT_NODE_FLAGS, ...argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    // Its own process group: a terminal's Ctrl-C reaches the parent only, which forwards it once.
    detached: true,
    env: {
      MALLOC_ARENA_MAX: AGENT_MALLOC_ARENA_MAX,
      ...process.env,
      [RELAUNCHED]: '1',
    },
  });
  child.on('error', (err) => {
    process.stderr.write(`leafbridge: cannot start the agent process: ${err.message}\n`);
    process.exit(1);
  });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, forward(s));
  child.on('exit', (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
  return true;
}

/** In the relaunched agent: exit at once (as if SIGKILLed) when the parent goes away. */
function watchParent(): void {
  process.channel?.unref();
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
}
