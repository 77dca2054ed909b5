import type {
  ApplicationDescriptionOptions,
  Message,
  OPCUABaseServerOptions,
  RegisteredServer,
  ServerSecureChannelLayer,
} from 'node-opcua';
import { errorMessage, LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { loadOpcua, type Opcua } from './opcuaModule.js';
import { openStubPki } from './pki.js';

export interface DiscoveryServerOptions {
  /** 0 (the default) takes any free port. */
  port?: number;
  /** The address to listen on and to put in the endpoint URL; default 127.0.0.1. */
  host?: string;
  applicationUri?: string;
  /**
   * Endpoints to offer; default both. With `['None']` it is a discovery server without encryption, which
   * can list servers but never accept a registration (registrations need a signed channel).
   */
  securityModes?: readonly ('None' | 'SignAndEncrypt')[];
  /** Default a temporary folder removed on stop. */
  pkiDir?: string;
  logger: Logger;
}

export interface DiscoveryServer {
  endpointUrl: string;
  /** applicationUris of the servers registered now. */
  registeredServers(): string[];
  stop(): Promise<void>;
}

/**
 * A Local Discovery Server for tests and demos: FindServers, GetEndpoints, RegisterServer(2).
 *
 * Not node-opcua's OPCUADiscoveryServer: that one announces itself and every registered server over mDNS
 * multicast on all interfaces, which must not leave a test machine (MACHINE-NOTES.md). This one answers on
 * its TCP endpoint only. As OPC UA Part 4 §5.5.5 asks, registrations are accepted over a signed channel
 * only; any client certificate is trusted (it is a simulator).
 */
export async function startDiscoveryServer(options: DiscoveryServerOptions): Promise<DiscoveryServer> {
  const opcua = await loadOpcua();
  const host = options.host ?? '127.0.0.1';
  const pki = await openStubPki(opcua, options.pkiDir, 'lds');
  const Lds = localDiscoveryServerClass(opcua);
  const lds = new Lds(
    {
      serverInfo: {
        applicationUri: options.applicationUri ?? 'urn:leafbridge:firmware-stubs:lds',
        productUri: 'urn:leafbridge:firmware-stubs:lds',
        applicationName: { text: 'leafbridge LDS', locale: 'en' },
        applicationType: opcua.ApplicationType.DiscoveryServer,
      },
      serverCertificateManager: pki.server,
    },
    { port: options.port ?? 0, host, securityModes: options.securityModes ?? ['None', 'SignAndEncrypt'] },
    options.logger,
  );
  try {
    await lds.start();
  } catch (err) {
    await pki.dispose();
    throw new LeafbridgeError('LDS_START', `discovery server failed to start: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  const endpointUrl = lds.getEndpointUrl();
  options.logger.info({ endpointUrl }, 'discovery server listening');
  return {
    endpointUrl,
    registeredServers: () => [...lds.registered.keys()],
    stop: async () => {
      await new Promise<void>((resolve) => lds.shutdown(() => resolve()));
      await pki.dispose();
    },
  };
}

interface Listen {
  port: number;
  host: string;
  securityModes: readonly ('None' | 'SignAndEncrypt')[];
}

function localDiscoveryServerClass(opcua: Opcua) {
  return class LocalDiscoveryServer extends opcua.OPCUABaseServer {
    readonly registered = new Map<string, ApplicationDescriptionOptions>();

    constructor(
      options: OPCUABaseServerOptions,
      listen: Listen,
      private readonly logger: Logger,
    ) {
      super(options);
      this._preInitTask.push(async () => this.addEndpoint(listen));
    }

    private addEndpoint(listen: Listen): void {
      const endpoint = new opcua.OPCUAServerEndPoint({
        port: listen.port,
        host: listen.host,
        certificateKeyPairProvider: this.getCertificateChainProvider(),
        certificateManager: this.serverCertificateManager,
        serverInfo: this.serverInfo,
      });
      endpoint.addStandardEndpointDescriptions({
        hostname: listen.host,
        allowAnonymous: true,
        securityModes: listen.securityModes.map((m) => opcua.MessageSecurityMode[m]),
        securityPolicies: listen.securityModes.map((m) =>
          m === 'None' ? opcua.SecurityPolicy.None : opcua.SecurityPolicy.Basic256Sha256,
        ),
        userTokenTypes: [],
        disableDiscovery: true,
      });
      endpoint.on('message', (message: Message, channel: ServerSecureChannelLayer) =>
        this.on_request(message, channel),
      );
      this.endpoints.push(endpoint);
    }

    override getServers(channel: ServerSecureChannelLayer) {
      const registered = [...this.registered.values()].map((s) => new opcua.ApplicationDescription(s));
      return [...super.getServers(channel), ...registered];
    }

    /** Called by OPCUABaseServer.on_request, which dispatches on `_on_<RequestName>`. */
    protected _on_RegisterServerRequest(message: Message, channel: ServerSecureChannelLayer): void {
      const request = message.request as InstanceType<Opcua['RegisterServerRequest']>;
      this.register(message, channel, request.server, () => new opcua.RegisterServerResponse({}));
    }

    protected _on_RegisterServer2Request(message: Message, channel: ServerSecureChannelLayer): void {
      const request = message.request as InstanceType<Opcua['RegisterServer2Request']>;
      const results = (request.discoveryConfiguration ?? []).map(() => opcua.StatusCodes.Good);
      this.register(
        message,
        channel,
        request.server,
        () => new opcua.RegisterServer2Response({ configurationResults: results }),
      );
    }

    private register(
      message: Message,
      channel: ServerSecureChannelLayer,
      server: RegisteredServer,
      ok: () => InstanceType<Opcua['RegisterServerResponse'] | Opcua['RegisterServer2Response']>,
    ): void {
      const status = this.check(channel, server);
      if (status !== undefined) {
        this.logger.warn({ serverUri: server.serverUri, status: status.toString() }, 'registration refused');
        const fault = new opcua.ServiceFault({ responseHeader: { serviceResult: status } });
        channel.send_response('MSG', fault, message);
        return;
      }
      this.apply(server);
      channel.send_response('MSG', ok(), message);
    }

    private check(channel: ServerSecureChannelLayer, server: RegisteredServer) {
      if (channel.securityMode === opcua.MessageSecurityMode.None) {
        return opcua.StatusCodes.BadSecurityModeInsufficient;
      }
      if (!server.serverUri) return opcua.StatusCodes.BadServerUriInvalid;
      if (!server.serverNames?.[0]?.text) return opcua.StatusCodes.BadServerNameMissing;
      if (!server.discoveryUrls?.[0]) return opcua.StatusCodes.BadDiscoveryUrlMissing;
      return undefined;
    }

    private apply(server: RegisteredServer): void {
      const uri = server.serverUri ?? '';
      if (!server.isOnline) {
        this.registered.delete(uri);
        this.logger.info({ serverUri: uri }, 'server unregistered');
        return;
      }
      if (!this.registered.has(uri)) this.logger.info({ serverUri: uri }, 'server registered');
      this.registered.set(uri, {
        applicationUri: uri,
        applicationName: server.serverNames?.[0],
        applicationType: server.serverType,
        productUri: server.productUri,
        gatewayServerUri: server.gatewayServerUri,
        discoveryUrls: server.discoveryUrls,
      });
    }
  };
}
