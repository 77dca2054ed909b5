import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, sleep } from './util.js';

export const MOSQUITTO = '/usr/sbin/mosquitto';

/** A bridge `connection` as the peer has it: persistent session, `devices/#` out at QoS 1 under a prefix. */
export interface BridgeTo {
  port: number;
  /** Upstream topics are `<remotePrefix>devices/...`, e.g. `leafbridge/edge-1/`. */
  remotePrefix: string;
  clientId: string;
}

/**
 * Debian's mosquitto as a real process on 127.0.0.1 with its own config file in `dir`: `persistence true`,
 * `max_queued_messages 0` (no per-client queue limit, so a lagging QoS 1 subscriber loses nothing), and
 * optionally a bridge `connection`.
 */
export class MosquittoProcess {
  child?: ChildProcess;
  port = 0;
  private readonly stderr: string[] = [];

  constructor(
    private readonly dir: string,
    private readonly bridge?: BridgeTo,
  ) {}

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    const file = join(this.dir, 'mosquitto.conf');
    writeFileSync(file, this.config());
    const child = spawn(MOSQUITTO, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr.push(d.toString());
      if (this.stderr.length > 50) this.stderr.shift();
    });
    const deadline = Date.now() + 10_000;
    while (!(await accepts(this.port))) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`mosquitto did not listen on ${this.port}: ${this.stderr.join('')}`);
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  private config(): string {
    const lines = [
      `listener ${this.port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${this.dir}/`,
      'max_queued_messages 0',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
    ];
    const b = this.bridge;
    if (b)
      lines.push(
        `connection ${b.clientId}`,
        `address 127.0.0.1:${b.port}`,
        `remote_clientid ${b.clientId}`,
        'cleansession false',
        `topic devices/# out 1 "" ${b.remotePrefix}`,
      );
    return `${lines.join('\n')}\n`;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
