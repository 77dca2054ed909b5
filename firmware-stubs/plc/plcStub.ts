import type { OPCUAServer, OPCUAServerOptions } from 'node-opcua';
import { type Clock, systemClock } from '../../src/util/clock.js';
import { errorMessage, LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { derToPem } from './certificatePem.js';
import { loadOpcua, type Opcua } from './opcuaModule.js';
import { openStubPki, type StubPki } from './pki.js';
import { buildPlant, type PlcIdentity } from './plantModel.js';
import { type RegistrationStatus, RegistrationWatch } from './registration.js';

/** The endpoints a simulated PLC offers: no security, and/or SignAndEncrypt with Basic256Sha256. */
export const PlcSecurity = { None: 'None', SignAndEncrypt: 'SignAndEncrypt' } as const;
export type PlcSecurity = (typeof PlcSecurity)[keyof typeof PlcSecurity];

export interface PlcStubOptions {
  applicationName?: string;
  /** Default `urn:leafbridge:plc:<applicationName>`. */
  applicationUri?: string;
  productUri?: string;
  /** 0 (the default) takes any free port. */
  port?: number;
  /** The address to listen on and to put in the endpoint URLs; default 127.0.0.1. */
  host?: string;
  /** Default both. */
  security?: readonly PlcSecurity[];
  /** When given, sessions need this user name and password; anonymous sessions are refused. */
  user?: { userName: string; password: string };
  /** Register with this Local Discovery Server (and unregister on stop). */
  discoveryServerEndpointUrl?: string;
  identity?: Partial<PlcIdentity>;
  /** Certificates go here; default a temporary folder removed on stop. Never node-opcua's ~/.config. */
  pkiDir?: string;
  logger: Logger;
  clock?: Clock;
}

export interface PlcStub {
  endpointUrl: string;
  applicationUri: string;
  applicationName: string;
  /** The server certificate, for a client's trust list. */
  certificatePem: string;
  /**
   * True once the discovery server lists the stub; false when registration failed (logged at error, and in
   * `registration()`) or is still pending after `timeoutMs`.
   */
  waitForRegistration(timeoutMs: number): Promise<boolean>;
  /** Registration with the discovery server as that server sees it; undefined without one. */
  registration(): RegistrationStatus | undefined;
  stop(): Promise<void>;
}

/** Starts a simulated PLC: a real node-opcua server (~1.5 s to start) with a `Plant` folder. */
export async function startPlcStub(options: PlcStubOptions): Promise<PlcStub> {
  const opcua = await loadOpcua();
  const applicationName = options.applicationName ?? 'leafbridge PLC';
  const applicationUri = options.applicationUri ?? `urn:leafbridge:plc:${slug(applicationName)}`;
  const pki = await openStubPki(opcua, options.pkiDir, 'plc');
  const server = new opcua.OPCUAServer(serverOptions(opcua, options, pki, applicationName, applicationUri));
  const registration =
    options.discoveryServerEndpointUrl === undefined
      ? undefined
      : new RegistrationWatch(opcua, server, pki, options.discoveryServerEndpointUrl, options.logger);
  const clock = options.clock ?? systemClock;
  let stopPlant = () => {};
  try {
    await server.initialize();
    stopPlant = buildPlant(opcua, server, identityOf(options, applicationName), clock);
    await server.start();
  } catch (err) {
    stopPlant();
    await shutdownQuietly(server, options.logger);
    await pki.dispose();
    throw new LeafbridgeError('PLC_STUB_START', `PLC stub failed to start: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  const endpointUrl = server.getEndpointUrl();
  options.logger.info({ endpointUrl, applicationUri }, 'PLC stub listening');
  return {
    endpointUrl,
    applicationUri,
    applicationName,
    certificatePem: derToPem(server.getCertificate()),
    waitForRegistration: async (timeoutMs) => (await registration?.wait(timeoutMs)) ?? false,
    registration: () => registration?.current(),
    stop: once_(async () => {
      await registration?.close();
      stopPlant();
      await shutdownQuietly(server, options.logger);
      await pki.dispose();
      options.logger.info({ endpointUrl }, 'PLC stub stopped');
    }),
  };
}

function serverOptions(
  opcua: Opcua,
  options: PlcStubOptions,
  pki: StubPki,
  applicationName: string,
  applicationUri: string,
): OPCUAServerOptions {
  const host = options.host ?? '127.0.0.1';
  const security = options.security ?? [PlcSecurity.None, PlcSecurity.SignAndEncrypt];
  const modes = security.map((s) => opcua.MessageSecurityMode[s]);
  const policies = security.map((s) =>
    s === PlcSecurity.None ? opcua.SecurityPolicy.None : opcua.SecurityPolicy.Basic256Sha256,
  );
  const user = options.user;
  return {
    port: options.port ?? 0,
    host,
    hostname: host,
    securityModes: modes,
    securityPolicies: policies,
    allowAnonymous: user === undefined,
    userManager: user && {
      isValidUser: (userName: string, password: string) =>
        userName === user.userName && password === user.password,
    },
    serverInfo: {
      applicationName: { text: applicationName, locale: 'en' },
      applicationUri,
      productUri: options.productUri ?? 'urn:leafbridge:firmware-stubs:plc',
    },
    buildInfo: { productName: 'leafbridge PLC stub', manufacturerName: 'leafbridge' },
    serverCertificateManager: pki.server,
    userCertificateManager: pki.user,
    ...(options.discoveryServerEndpointUrl === undefined
      ? {}
      : {
          registerServerMethod: opcua.RegisterServerMethod.LDS,
          discoveryServerEndpointUrl: options.discoveryServerEndpointUrl,
        }),
  };
}

function identityOf(options: PlcStubOptions, applicationName: string): PlcIdentity {
  return {
    serialNumber: options.identity?.serialNumber ?? `SN-${slug(applicationName).toUpperCase()}`,
    model: options.identity?.model ?? 'LB-PLC-1',
  };
}

async function shutdownQuietly(server: OPCUAServer, logger: Logger): Promise<void> {
  try {
    await server.shutdown();
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'PLC stub shutdown failed');
  }
}

function slug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '') || 'plc'
  );
}

function once_(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => {
    done ??= fn();
    return done;
  };
}
