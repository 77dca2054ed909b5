import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { findProto, loadProto } from '../../src/util/protoFiles.js';
import { accepts, DetailsError, parseDetails, type TcpDetails } from './targets.js';

/**
 * An Akri discovery handler in TypeScript: it serves Akri's `v0.DiscoveryHandler` on DIR/NAME.sock,
 * registers with the agent on DIR/agent-registration.sock (`v0.Registration`), and for each Discover call
 * streams the TCP endpoints of the config's `targets` that accept a connection, again whenever that changes.
 * It speaks the protocol of src/discovery/external/proto/discovery.proto, Akri's own definition.
 */
export interface TcpHandlerOptions {
  /** The directory of the agent's registration socket (Akri's /var/lib/akri). */
  dir: string;
  /** The name it registers under: the agent's `discovery.external.handlers` must list it. */
  name: string;
  logger: Logger;
  /** How long one connection attempt may take. Default 1000 ms. */
  connectTimeoutMs?: number;
}

export interface TcpHandler {
  /** The socket its DiscoveryHandler service listens on. */
  endpoint: string;
  stop(): Promise<void>;
}

interface DiscoverRequest {
  discovery_details: string;
}
interface AkriDevice {
  id: string;
  properties: Record<string, string>;
  mounts: never[];
  device_specs: never[];
}

type RegisterCall = (
  request: object,
  options: grpc.CallOptions,
  done: (err: grpc.ServiceError | null) => void,
) => void;
type Services = Record<string, grpc.ServiceClientConstructor & { service: grpc.ServiceDefinition }>;

function services(): Services {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const file = findProto(here, 'discovery/external', 'discovery.proto');
  if (!file) throw new Error(`Akri's discovery.proto not found from ${here}`);
  return grpc.loadPackageDefinition(loadProto(file)).v0 as unknown as Services;
}

/** Starts serving, then registers (again every second until the agent takes it). */
export async function startTcpHandler(o: TcpHandlerOptions): Promise<TcpHandler> {
  const v0 = services();
  mkdirSync(o.dir, { recursive: true });
  const endpoint = join(o.dir, `${o.name}.sock`);
  rmSync(endpoint, { force: true });
  const server = new grpc.Server();
  const calls = new Set<grpc.ServerWritableStream<DiscoverRequest, { devices: AkriDevice[] }>>();
  server.addService((v0.DiscoveryHandler as Services[string]).service, {
    Discover: (call: grpc.ServerWritableStream<DiscoverRequest, { devices: AkriDevice[] }>) => {
      calls.add(call);
      call.on('close', () => calls.delete(call));
      void discover(call, o);
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${endpoint}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  const registration = new AbortController();
  void register(v0, endpoint, o, registration.signal);
  return {
    endpoint,
    stop: async () => {
      registration.abort();
      for (const call of calls) call.end();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      rmSync(endpoint, { force: true });
    },
  };
}

async function register(v0: Services, endpoint: string, o: TcpHandlerOptions, signal: AbortSignal) {
  const Registration = v0.Registration as Services[string];
  const agent = new Registration(
    `unix://${join(o.dir, 'agent-registration.sock')}`,
    grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client & { RegisterDiscoveryHandler: RegisterCall };
  const request = { name: o.name, endpoint, endpoint_type: 'UDS', shared: true };
  try {
    while (!signal.aborted) {
      const refused = await new Promise<grpc.ServiceError | null>((resolve) =>
        agent.RegisterDiscoveryHandler(request, { deadline: Date.now() + 5_000 }, resolve),
      );
      if (!refused) return void o.logger.info({ name: o.name, endpoint }, 'registered with the agent');
      o.logger.debug({ err: refused.message }, 'registration not taken yet, trying again');
      await new Promise((r) => setTimeout(r, 1_000));
    }
  } finally {
    agent.close();
  }
}

/** One Discover call: validate the details, then look every interval and send each new list. */
async function discover(
  call: grpc.ServerWritableStream<DiscoverRequest, { devices: AkriDevice[] }>,
  o: TcpHandlerOptions,
): Promise<void> {
  let details: TcpDetails;
  try {
    details = parseDetails(call.request.discovery_details);
  } catch (err) {
    const message = err instanceof DetailsError ? err.message : String(err);
    call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: message });
    return;
  }
  let last = '';
  while (!call.cancelled && !call.closed) {
    const open = await Promise.all(
      details.targets.map((t) => accepts(t.host, t.port, o.connectTimeoutMs ?? 1_000)),
    );
    const devices = details.targets.filter((_, i) => open[i]).map(toDevice);
    const text = JSON.stringify(devices);
    if (text !== last && !call.cancelled && !call.closed) {
      call.write({ devices });
      last = text;
    }
    await new Promise((r) => setTimeout(r, details.intervalMs));
  }
}

function toDevice(t: { host: string; port: number }): AkriDevice {
  const address = t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
  return {
    id: `tcp://${address}`,
    properties: { TCP_ENDPOINT: address, TCP_HOST: t.host, TCP_PORT: String(t.port) },
    mounts: [],
    device_specs: [],
  };
}
