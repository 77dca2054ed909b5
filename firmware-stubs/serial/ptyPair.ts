import { type ChildProcess, spawn } from 'node:child_process';
import { LeafbridgeError } from '../../src/util/errors.js';

/** Two connected pseudo-terminals made by socat: bytes written to one are read from the other. */
export interface PtyPair {
  /** The end the simulated device firmware holds open. */
  firmwareEnd: string;
  /** The end a host program (the agent) opens as the serial port. */
  hostEnd: string;
  close(): Promise<void>;
  /** SIGKILL socat: both ptys vanish at once, nothing is cleaned up (a device losing power). */
  kill(): Promise<void>;
}

const startTimeoutMs = 5_000;
const exitTimeoutMs = 2_000;

/** Spawns `socat -d -d pty,raw,echo=0 pty,raw,echo=0` and waits until both ptys exist and data flows. */
export async function openPtyPair(socatPath = 'socat'): Promise<PtyPair> {
  const child = spawn(socatPath, ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    const [firmwareEnd, hostEnd] = await readPtyNames(child);
    return { firmwareEnd, hostEnd, close: () => stopChild(child), kill: () => stopChild(child, 'SIGKILL') };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/** socat logs `PTY is /dev/pts/N` for each address in order, then `starting data transfer loop`. */
function readPtyNames(child: ChildProcess): Promise<[string, string]> {
  return new Promise((resolve, reject) => {
    const names: string[] = [];
    let log = '';
    const fail = (why: string, cause?: unknown) => {
      clearTimeout(timer);
      reject(new LeafbridgeError('SOCAT_FAILED', `socat: ${why}${log ? `: ${log.trim()}` : ''}`, { cause }));
    };
    const timer = setTimeout(() => fail(`no pty pair within ${startTimeoutMs} ms`), startTimeoutMs);
    const onError = (err: Error) => fail('cannot start (is socat installed?)', err);
    const onExit = (code: number | null) => fail(`exited with ${code} before the pair was ready`);
    child.once('error', onError);
    child.once('exit', onExit);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      if (log.length < 4_096) log += text;
      for (const m of text.matchAll(/PTY is (\S+)/g)) names.push(m[1] as string);
      if (names.length >= 2 && log.includes('starting data transfer loop')) {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.off('error', onError);
        child.on('error', () => {});
        resolve([names[0] as string, names[1] as string]);
      }
    });
  });
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), exitTimeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}
