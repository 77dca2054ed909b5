import type { OPCUAClient } from 'node-opcua';
import { LeafbridgeError } from '../../src/util/errors.js';
import { CLIENT_APPLICATION_NAME } from './clientPki.js';
import type { SecurityMode } from './detailsSchema.js';
import type { OpcuaEnv } from './env.js';
import { guardedTransportFactory } from './guardedTransport.js';

export interface ClientSecurity {
  mode: SecurityMode;
  policy: string;
  /** Saves the client a GetEndpoints round trip to learn it. */
  serverCertificate?: Buffer;
}

export const NO_SECURITY: ClientSecurity = { mode: 'None', policy: 'None' };

/** One client, no retries: discovery tries again at the next scan, not inside node-opcua's backoff. */
export function createClient(env: OpcuaEnv, security: ClientSecurity, idleTimeoutMs: number): OPCUAClient {
  const { opcua, settings, pki } = env;
  return opcua.OPCUAClient.create({
    applicationName: CLIENT_APPLICATION_NAME,
    applicationUri: pki.applicationUri,
    clientName: 'leafbridge-discovery',
    clientCertificateManager: pki.certificateManager,
    certificateFile: pki.certificateFile,
    securityMode: opcua.MessageSecurityMode[security.mode],
    securityPolicy: opcua.SecurityPolicy[security.policy as keyof typeof opcua.SecurityPolicy],
    ...(security.serverCertificate && { serverCertificate: security.serverCertificate }),
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    transportTimeout: idleTimeoutMs,
    defaultTransactionTimeout: settings.connectTimeoutMs,
    requestedSessionTimeout: 60_000,
    transportFactory: guardedTransportFactory(opcua, env.logger),
  });
}

/**
 * Connects to `url`, runs `work`, disconnects. The whole exchange is bounded by connectTimeoutMs and by the
 * discovery's signal: a server that accepts TCP and never answers costs that long and no longer.
 */
export async function withClient<T>(
  env: OpcuaEnv,
  url: string,
  security: ClientSecurity,
  work: (client: OPCUAClient) => Promise<T>,
): Promise<T> {
  const client = createClient(env, security, env.settings.connectTimeoutMs * 2);
  const disconnect = onceDisconnect(client);
  const exchange = (async () => {
    await client.connect(url);
    return work(client);
  })();
  try {
    return await withDeadline(env, exchange, env.settings.connectTimeoutMs, url, () => void disconnect());
  } finally {
    await disconnect();
  }
}

/** `work`, or an OPCUA_TIMEOUT / OPCUA_ABORTED error when it takes longer than `ms` or discovery stops. */
export function withDeadline<T>(
  env: Pick<OpcuaEnv, 'clock' | 'signal'>,
  work: Promise<T>,
  ms: number,
  url: string,
  onExpire: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const expire = (err: Error) => {
      cleanup();
      onExpire();
      reject(err);
    };
    const onAbort = () => expire(new LeafbridgeError('OPCUA_ABORTED', `${url}: discovery stopped`));
    const timer = env.clock.setTimeout(
      () => expire(new LeafbridgeError('OPCUA_TIMEOUT', `${url}: no answer within ${ms} ms`)),
      ms,
    );
    const cleanup = () => {
      env.clock.clearTimeout(timer);
      env.signal.removeEventListener('abort', onAbort);
    };
    if (env.signal.aborted) return onAbort();
    env.signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (err: unknown) => {
        cleanup();
        reject(err);
      },
    );
  });
}

/**
 * A disconnect that may be called many times (deadline, finally, close event): node-opcua warns (W26) when
 * disconnect is called on a client already disconnecting. Never rejects.
 */
export function onceDisconnect(client: OPCUAClient): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => {
    done ??= client.disconnect().catch(() => {});
    return done;
  };
}
