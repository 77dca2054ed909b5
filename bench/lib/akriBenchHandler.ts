// An external discovery handler for `npm run bench -- discovery`, speaking Akri's gRPC protocol the way a handler
// beside the agent does: it serves DiscoveryHandler.Discover on its own unix socket, registers with the agent's
// agent-registration.sock (again until the agent takes it, as a handler started before the agent must), and
// streams the device list the bench sets. It runs in the bench process; the agent only sees the sockets.
import { join } from 'node:path';
import { akriDevice, type DiscoverCall, handlerServer, register } from '../../test/helpers/akriHandlers.js';
import { sleep } from './util.js';

export interface AkriBenchHandler {
  /** The devices every open Discover stream now lists (sent at once). */
  setDevices(ids: string[]): void;
  /** Open Discover streams (the agent keeps one per DiscoveryConfig that names this handler). */
  readonly streams: number;
  /** Resolves once the agent accepted the registration; rejects when it did not within the bound. */
  registered: Promise<void>;
  stop(): void;
}

/**
 * Serves `<dir>/<name>.sock` and registers it as `name` at `<dir>/agent-registration.sock`, retrying every
 * `retryMs` until the agent answers OK or `timeoutMs` passes.
 */
export async function startAkriBenchHandler(
  dir: string,
  name: string,
  options: { retryMs?: number; timeoutMs?: number } = {},
): Promise<AkriBenchHandler> {
  const { retryMs = 200, timeoutMs = 30_000 } = options;
  const socket = join(dir, `${name}.sock`);
  const open = new Set<DiscoverCall>();
  let devices: string[] = [];
  const send = (call: DiscoverCall) => call.write({ devices: devices.map((id) => akriDevice(id)) });
  const server = await handlerServer(socket, (call) => {
    open.add(call);
    const drop = () => open.delete(call);
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', drop);
    send(call);
  });
  let stopped = false;
  const registered = (async () => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (!stopped && Date.now() < deadline) {
      const r = await register(dir, { name, endpoint: socket, endpoint_type: 'UDS', shared: false });
      if (r.code === 0) return;
      last = `gRPC status ${r.code} ${r.details}`;
      await sleep(retryMs);
    }
    throw new Error(`external handler ${name}: not registered within ${timeoutMs} ms (${last || 'stopped'})`);
  })();
  registered.catch(() => undefined); // read by whoever awaits it; not an unhandled rejection meanwhile
  return {
    setDevices(ids) {
      devices = [...ids];
      for (const call of open) send(call);
    },
    get streams() {
      return open.size;
    },
    registered,
    stop() {
      stopped = true;
      for (const call of open) call.end();
      server.stop();
    },
  };
}
