import type { OPCUAServer } from 'node-opcua';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Opcua } from './opcuaModule.js';
import type { StubPki } from './pki.js';

export const RegistrationState = {
  pending: 'pending',
  registered: 'registered',
  failed: 'failed',
} as const;
export type RegistrationState = (typeof RegistrationState)[keyof typeof RegistrationState];

export interface RegistrationStatus {
  state: RegistrationState;
  /** Why it failed, when it did. */
  reason?: string;
}

const checkTimeoutMs = 5_000;

/**
 * Registration with a Local Discovery Server, as the discovery server sees it. node-opcua registers in the
 * background and says `serverRegistered` even when the RegisterServer call failed (it swallows the refusal,
 * e.g. BadSecurityModeInsufficient from a discovery server offering no encryption): so after each attempt
 * this asks the discovery server (FindServers) whether it lists us. Changes of state are logged, at error
 * when registration fails.
 */
export class RegistrationWatch {
  private status: RegistrationStatus = { state: RegistrationState.pending };
  private readonly waiters = new Set<() => void>();
  private checking: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly opcua: Opcua,
    private readonly server: OPCUAServer,
    private readonly pki: StubPki,
    private readonly discoveryUrl: string,
    private readonly logger: Logger,
  ) {
    const check = () => {
      this.checking ??= this.check().finally(() => {
        this.checking = undefined;
      });
    };
    server.on('serverRegistered', check);
    server.on('serverRegistrationRenewed', check);
    // Emitted by node-opcua's RegisterServerManager, but not in OPCUAServer's typed events.
    (server as unknown as NodeJS.EventEmitter).on('serverRegistrationFailure', () =>
      this.set({ state: RegistrationState.failed, reason: 'the discovery server cannot be reached' }),
    );
  }

  current(): RegistrationStatus {
    return { ...this.status };
  }

  /** True once registered; false when registration failed, or is still pending after `timeoutMs`. */
  async wait(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.status.state === RegistrationState.pending && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, deadline - Date.now());
        const waiters = this.waiters;
        function wake() {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve();
        }
        this.waiters.add(wake);
      });
    }
    return this.status.state === RegistrationState.registered;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.checking;
  }

  private async check(): Promise<void> {
    const applicationUri = this.server.serverInfo.applicationUri ?? '';
    try {
      const listed = await this.listedUris();
      if (this.closed) return;
      this.set(
        listed.includes(applicationUri)
          ? { state: RegistrationState.registered }
          : {
              state: RegistrationState.failed,
              reason: 'the discovery server does not list this server after RegisterServer (refused)',
            },
      );
    } catch (err) {
      if (!this.closed)
        this.set({ state: RegistrationState.failed, reason: `FindServers failed: ${errorMessage(err)}` });
    }
  }

  private async listedUris(): Promise<string[]> {
    const client = this.opcua.OPCUAClient.create({
      applicationName: 'leafbridge PLC stub registration check',
      clientCertificateManager: this.pki.server,
      certificateFile: this.server.certificateFile,
      privateKeyFile: this.server.privateKeyFile,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
      requestedSessionTimeout: checkTimeoutMs,
      transportTimeout: checkTimeoutMs,
    });
    try {
      await client.connect(this.discoveryUrl);
      const servers = await client.findServers();
      return servers.map((s) => s.applicationUri ?? '');
    } finally {
      await client.disconnect().catch(() => {});
    }
  }

  private set(next: RegistrationStatus): void {
    const changed = next.state !== this.status.state || next.reason !== this.status.reason;
    this.status = next;
    if (changed) {
      const fields = { discoveryServer: this.discoveryUrl, ...(next.reason && { reason: next.reason }) };
      if (next.state === RegistrationState.failed)
        this.logger.error(fields, 'registration with the discovery server failed');
      else if (next.state === RegistrationState.registered)
        this.logger.info(fields, 'registered with the discovery server');
    }
    for (const wake of [...this.waiters]) wake();
  }
}
