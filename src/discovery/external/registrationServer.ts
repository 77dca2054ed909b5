import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { LeafbridgeError } from '../../util/errors.js';
import type { Logger } from '../../util/logger.js';
import {
  AKRI_REGISTRATION_SOCKET,
  akriProto,
  EndpointType,
  type RegisterDiscoveryHandlerRequest,
  registrationProblem,
} from './protocol.js';
import { differs, type HandlerRegistrations } from './registrations.js';

export interface RegistrationServerOptions {
  /** The directory of agent-registration.sock (and, by Akri's convention, of the handlers' sockets). */
  dir: string;
  registrations: HandlerRegistrations;
  logger: Logger;
}

/** Registration requests larger than this are refused by gRPC before they are read. */
const MAX_REQUEST_BYTES = 16 * 1024;

/**
 * Akri's `Registration` service on `<dir>/agent-registration.sock`: a handler sends its name, endpoint,
 * endpoint type and sharing, and DiscoveryConfigs naming it then run on it. Bad requests are answered with
 * INVALID_ARGUMENT (or NOT_FOUND for a name the agent's config does not list) and change nothing.
 */
export class RegistrationServer {
  private server: grpc.Server | undefined;

  constructor(private readonly o: RegistrationServerOptions) {}

  get socketPath(): string {
    return join(this.o.dir, AKRI_REGISTRATION_SOCKET);
  }

  async start(): Promise<void> {
    mkdirSync(this.o.dir, { recursive: true, mode: 0o750 });
    rmSync(this.socketPath, { force: true }); // a socket left by an agent that was killed
    const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
    server.addService(akriProto().Registration, {
      RegisterDiscoveryHandler: (
        call: grpc.ServerUnaryCall<RegisterDiscoveryHandlerRequest, object>,
        callback: grpc.sendUnaryData<object>,
      ) => callback(...this.register(call.request)),
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err
          ? reject(
              new LeafbridgeError('AKRI_REGISTRATION_BIND', `cannot serve ${this.socketPath}`, {
                cause: err,
              }),
            )
          : resolve(),
      ),
    );
    chmodSync(this.socketPath, 0o660);
    this.server = server;
    this.o.logger.info({ socket: this.socketPath }, 'external discovery handlers may register');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => server.forceShutdown(), 1000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    rmSync(this.socketPath, { force: true });
  }

  /**
   * A UDS endpoint outside the socket directory is refused: the agent would otherwise connect wherever a
   * registration points it (the kubelet's socket, a container runtime's) and speak gRPC to it.
   */
  private outside(req: RegisterDiscoveryHandlerRequest): string | undefined {
    if (req.endpoint_type !== EndpointType.uds) return undefined;
    const path = resolve(req.endpoint);
    return dirname(path) === resolve(this.o.dir)
      ? undefined
      : `a UDS endpoint must be a socket in ${this.o.dir}`;
  }

  private register(req: RegisterDiscoveryHandlerRequest): [grpc.ServiceError | null, object?] {
    const { logger, registrations } = this.o;
    const problem = registrationProblem(req) ?? this.outside(req);
    const name = String(req.name).slice(0, 80);
    if (problem) {
      logger.warn({ name, problem }, 'handler registration refused');
      return [refusal(grpc.status.INVALID_ARGUMENT, problem)];
    }
    if (!registrations.accepts(req.name)) {
      const message = `no DiscoveryConfig may use ${req.name}: add it to discovery.external.handlers`;
      logger.warn({ name }, message);
      return [refusal(grpc.status.NOT_FOUND, message)];
    }
    const before = registrations.get(req.name);
    const now = registrations.register(req);
    const fields = { name, endpoint: req.endpoint, endpointType: req.endpoint_type, shared: req.shared };
    if (before && differs(before, now)) {
      logger.warn(
        { ...fields, replaced: before.endpoint },
        'handler registered again elsewhere; the last one is used',
      );
    } else {
      logger.info(fields, before ? 'handler registered again' : 'handler registered');
    }
    return [null, {}];
  }
}

function refusal(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}
