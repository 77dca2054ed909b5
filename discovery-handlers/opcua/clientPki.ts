import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OPCUACertificateManager } from 'node-opcua';
import type { Logger } from '../../src/util/logger.js';
import type { Opcua } from './opcuaModule.js';
import type { OpcuaSettings } from './settings.js';

/** The client's certificate store: always a folder of ours, never node-opcua's default under ~/.config. */
export interface ClientPki {
  dir: string;
  certificateManager: OPCUACertificateManager;
  /** Where node-opcua's client looks by default (`own/certs/client_certificate.pem`), given explicitly. */
  certificateFile: string;
  applicationUri: string;
  dispose(): Promise<void>;
}

export const CLIENT_APPLICATION_NAME = 'leafbridge';

export async function openClientPki(
  opcua: Opcua,
  settings: OpcuaSettings,
  logger: Logger,
): Promise<ClientPki> {
  const dir = settings.pkiDir ?? (await mkdtemp(join(tmpdir(), 'leafbridge-opcua-')));
  const certificateManager = new opcua.OPCUACertificateManager({
    rootFolder: dir,
    automaticallyAcceptUnknownCertificate: settings.automaticallyAcceptUnknownCertificates,
    disableFileWatchers: true,
  });
  const pki: ClientPki = {
    dir,
    certificateManager,
    certificateFile: join(dir, 'own', 'certs', 'client_certificate.pem'),
    applicationUri: `urn:${hostname()}:leafbridge:opcua-discovery`,
    dispose: async () => {
      await certificateManager.dispose();
      if (settings.pkiDir === undefined) await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await certificateManager.initialize();
    await trustAll(certificateManager, settings.trustedCertificates);
    await createOwnCertificate(opcua, pki);
  } catch (err) {
    await pki.dispose().catch(() => {});
    throw err;
  }
  logger.debug({ pkiDir: dir }, 'OPC UA client PKI ready');
  return pki;
}

/** Done once here rather than by the first clients of a scan, which would spend their connect timeout on it. */
async function createOwnCertificate(opcua: Opcua, pki: ClientPki): Promise<void> {
  if (existsSync(pki.certificateFile)) return;
  await pki.certificateManager.createSelfSignedCertificate({
    applicationUri: pki.applicationUri,
    dns: [hostname()],
    outputFile: pki.certificateFile,
    subject: opcua.makeSubject(CLIENT_APPLICATION_NAME, hostname()),
    startDate: new Date(),
    validity: 365 * 10,
  });
}

async function trustAll(cm: OPCUACertificateManager, pems: readonly string[]): Promise<void> {
  for (const pem of pems) for (const der of pemToDer(pem)) await cm.trustCertificate(der);
}

export function pemToDer(pem: string): Buffer[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => Buffer.from(b.replace(/-----(BEGIN|END) CERTIFICATE-----|\s+/g, ''), 'base64'));
}
