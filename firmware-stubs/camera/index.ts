import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../src/util/logger.js';
import { silentLogger } from '../../src/util/logger.js';
import type { StubCredentials } from './auth.js';
import { type CameraModel, defaultScopes, deviceServiceUrl, type StubProfile } from './model.js';
import { createSoapServer, defaultMaxRequestBytes } from './soapServer.js';
import { DiscoveryResponder } from './wsDiscovery.js';

export interface CameraStubOptions {
  /** IPv4 address of the interface WS-Discovery runs on (joined, and pinned for sending). Required. */
  multicastInterface: string;
  /** `urn:uuid:…`; a random one by default. */
  uuid?: string;
  /** Address the SOAP server binds and reports in XAddrs. Default 127.0.0.1. */
  httpAddress?: string;
  /** Default 0: any free port, read back from `stub.port`. */
  httpPort?: number;
  manufacturer?: string;
  model?: string;
  serialNumber?: string;
  firmwareVersion?: string;
  hardwareId?: string;
  macAddress?: string;
  hostname?: string;
  scopes?: string[];
  profiles?: StubProfile[];
  /** When set, every SOAP call but GetSystemDateAndTime needs a valid WS-UsernameToken PasswordDigest. */
  credentials?: StubCredentials;
  /** Stream URI base; a profile's URI is `<base>/<token>`. Default rtsp://<httpAddress>:8554. */
  rtspBaseUri?: string;
  metadataVersion?: number;
  /** False: SOAP only, no WS-Discovery socket (nothing multicast). Default true. */
  discovery?: boolean;
  maxRequestBytes?: number;
  logger?: Logger;
}

export interface CameraStub {
  readonly uuid: string;
  readonly address: string;
  readonly port: number;
  readonly deviceServiceUrl: string;
  /** Sends another Hello (multicast). */
  hello(): Promise<void>;
  /** Sends Bye (multicast), then closes every socket. */
  stop(): Promise<void>;
  /** Closes every socket without a Bye: the camera's power is cut. */
  vanish(): Promise<void>;
}

function randomMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = ((bytes[0] ?? 0) & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

function buildModel(options: CameraStubOptions): CameraModel {
  const address = options.httpAddress ?? '127.0.0.1';
  const model = options.model ?? 'LB-Cam 1000';
  const rtsp = (options.rtspBaseUri ?? `rtsp://${address}:8554`).replace(/\/$/, '');
  return {
    uuid: options.uuid ?? `urn:uuid:${randomUUID()}`,
    manufacturer: options.manufacturer ?? 'Leafbridge Simulated',
    model,
    serialNumber: options.serialNumber ?? randomBytes(6).toString('hex').toUpperCase(),
    firmwareVersion: options.firmwareVersion ?? '1.0.0',
    hardwareId: options.hardwareId ?? 'LBSIM-1',
    macAddress: options.macAddress ?? randomMac(),
    hostname: options.hostname ?? 'lb-camera',
    scopes: options.scopes ?? defaultScopes(model, 'leafbridge-sim'),
    profiles: options.profiles ?? [
      { name: 'main', token: 'profile_main' },
      { name: 'sub', token: 'profile_sub' },
    ],
    credentials: options.credentials,
    streamUri: (token) => `${rtsp}/${encodeURIComponent(token)}`,
    metadataVersion: options.metadataVersion ?? 1,
    address,
    port: 0,
  };
}

/** Starts one simulated ONVIF camera: SOAP device and media services, and WS-Discovery (unless disabled). */
export async function startCameraStub(options: CameraStubOptions): Promise<CameraStub> {
  const logger = options.logger ?? silentLogger();
  const model = buildModel(options);
  const server = createSoapServer(model, logger, options.maxRequestBytes ?? defaultMaxRequestBytes);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.httpPort ?? 0, model.address, () => resolve());
  });
  model.port = (server.address() as AddressInfo).port;
  const responder =
    options.discovery === false
      ? undefined
      : new DiscoveryResponder(model, options.multicastInterface, logger);
  try {
    await responder?.start();
  } catch (err) {
    server.close();
    throw err;
  }
  logger.info({ uuid: model.uuid, url: deviceServiceUrl(model) }, 'camera stub started');
  const stop = async (bye: boolean) => {
    await responder?.stop(bye);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    uuid: model.uuid,
    address: model.address,
    port: model.port,
    deviceServiceUrl: deviceServiceUrl(model),
    hello: () => responder?.hello() ?? Promise.resolve(),
    stop: () => stop(true),
    vanish: () => stop(false),
  };
}

export type { StubCredentials } from './auth.js';
export type { StubProfile } from './model.js';
