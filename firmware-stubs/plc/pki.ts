import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OPCUACertificateManager } from 'node-opcua';
import type { Opcua } from './opcuaModule.js';

/** Where a simulated device keeps its certificates: a folder of ours, never node-opcua's ~/.config default. */
export interface StubPki {
  dir: string;
  /** Certificates of this server and of the clients it meets; accepts unknown peers (a simulator trusts all). */
  server: OPCUACertificateManager;
  /** X509 user-token certificates (unused, but node-opcua would otherwise create one under ~/.config). */
  user: OPCUACertificateManager;
  /** Deletes the folder when we created it. */
  dispose(): Promise<void>;
}

export async function openStubPki(
  opcua: Opcua,
  pkiDir: string | undefined,
  prefix: string,
): Promise<StubPki> {
  const dir = pkiDir ?? (await mkdtemp(join(tmpdir(), `leafbridge-${prefix}-`)));
  const server = new opcua.OPCUACertificateManager({
    rootFolder: join(dir, 'server'),
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
  });
  const user = new opcua.OPCUACertificateManager({
    rootFolder: join(dir, 'user'),
    disableFileWatchers: true,
  });
  return {
    dir,
    server,
    user,
    dispose: async () => {
      if (pkiDir === undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}
