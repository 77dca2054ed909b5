import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type ExternalHandlerOptions,
  externalHandler,
} from '../../src/discovery/external/externalHandler.js';
import {
  type AkriDevice,
  akriProto,
  type DiscoverRequest,
  type DiscoverResponse,
  type RegisterDiscoveryHandlerRequest,
} from '../../src/discovery/external/protocol.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { systemClock } from '../../src/util/clock.js';
import { silentLogger } from '../../src/util/logger.js';

export type DiscoverCall = grpc.ServerWritableStream<DiscoverRequest, DiscoverResponse>;

/**
 * A discovery handler under test control, on a unix socket: `onDiscover` decides what each call gets.
 * `raw` serves bytes as they are (garbage on the wire) instead of encoded responses.
 */
export async function handlerServer(
  socketPath: string,
  onDiscover: (call: DiscoverCall) => void,
  options: { raw?: boolean } = {},
): Promise<{ calls: DiscoverCall[]; stop(): void }> {
  const calls: DiscoverCall[] = [];
  const { Discover } = akriProto().DiscoveryHandler;
  const definition = {
    Discover: options.raw ? { ...Discover, responseSerialize: (b: unknown) => b as Buffer } : Discover,
  };
  const server = new grpc.Server();
  server.addService(definition as unknown as grpc.ServiceDefinition, {
    Discover: (call: DiscoverCall) => {
      calls.push(call);
      onDiscover(call);
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return { calls, stop: () => server.forceShutdown() };
}

/** Registers with the agent's socket in `dir`; resolves with the gRPC status code (0 = OK). */
export function register(
  dir: string,
  request: Partial<RegisterDiscoveryHandlerRequest> | Buffer,
): Promise<{ code: number; details: string }> {
  const method = akriProto().Registration.RegisterDiscoveryHandler;
  const client = new grpc.Client(
    `unix://${join(dir, 'agent-registration.sock')}`,
    grpc.credentials.createInsecure(),
  );
  const serialize = Buffer.isBuffer(request) ? (b: unknown) => b as Buffer : method.requestSerialize;
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method.path,
      serialize as (r: unknown) => Buffer,
      method.responseDeserialize,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err) => {
        client.close();
        resolve({ code: err?.code ?? 0, details: err?.details ?? '' });
      },
    );
  });
}

export const akriDevice = (id: string, extra: Partial<AkriDevice> = {}): AkriDevice => ({
  id,
  properties: { ID: id },
  mounts: [],
  device_specs: [],
  ...extra,
});

/** Runs an external handler's discovery the way the manager does, keeping what it yields and reports. */
export function runExternal(
  name: string,
  options: ExternalHandlerOptions,
  details: Record<string, unknown> = {},
) {
  const abort = new AbortController();
  const lists: { at: number; devices: DiscoveredDevice[] }[] = [];
  const reports: { status: string; reason: string; message: string }[] = [];
  const handler = externalHandler(name, options);
  const done = (async () => {
    for await (const devices of handler.discover(details, {
      logger: silentLogger(),
      clock: systemClock,
      signal: abort.signal,
      report: (status, reason, message) => reports.push({ status, reason, message }),
    })) {
      lists.push({ at: Date.now(), devices });
    }
  })();
  return {
    handler,
    lists,
    reports,
    last: () => lists.at(-1)?.devices,
    async stop() {
      abort.abort();
      await done;
    },
  };
}
