import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { BrokerTlsConfig, BrokerWebsocketConfig, HostPort } from '../config/load.js';
import type { Logger } from '../util/logger.js';
import { TlsFiles } from '../util/tlsFiles.js';

/** Where the broker listens: plain MQTT always, mqtts and MQTT over WebSocket when configured. */
export interface ListenerConfig {
  listen: HostPort;
  tls?: BrokerTlsConfig;
  websocket?: BrokerWebsocketConfig;
}

export interface BrokerAddresses {
  mqtt: HostPort;
  mqtts?: HostPort;
  websocket?: HostPort;
}

/** A client certificate the TLS layer verified against the client CA, and the name it gives its holder. */
export interface VerifiedCertificate {
  /** Undefined when the certificate lacks the configured name (such a client is refused). */
  name: string | undefined;
}

/** Hands a new connection to the broker, with its verified client certificate if it presented one. */
export type Accept = (
  conn: Duplex,
  req: IncomingMessage | undefined,
  certificate?: VerifiedCertificate,
) => void;

/**
 * The edge broker's listening sockets. The TLS ones serve the certificate, key and client CA from files that
 * are read again every `reloadInterval`; new handshakes get the new ones, connected clients stay.
 */
export class BrokerListeners {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private tlsFiles?: TlsFiles;
  private webSockets?: WebSocketServer;

  constructor(
    private readonly o: {
      config: ListenerConfig;
      logger: Logger;
      maxPacketSize: number;
      accept: Accept;
      /** A client certificate that did not verify (the connection is closed before any MQTT is read). */
      onCertificateRefused: (details: { remote: string | undefined; err: string }) => void;
    },
  ) {}

  async start(): Promise<BrokerAddresses> {
    const { config, accept } = this.o;
    const plain = this.track(createNetServer((socket) => accept(socket, undefined)));
    const addresses: BrokerAddresses = { mqtt: await listen(plain, config.listen) };
    const tlsOptions = config.tls ? this.serverTlsOptions(config.tls) : undefined;
    if (config.tls && tlsOptions) {
      const from = config.tls.identityFrom;
      const server = this.track(
        createTlsServer(tlsOptions, (socket) => {
          if (this.refuseUnverified(socket)) return;
          accept(socket, undefined, verifiedCertificate(socket, from));
        }),
      );
      this.tlsFiles?.watch(server);
      addresses.mqtts = await listen(server, config.tls.listen);
    }
    if (config.websocket) addresses.websocket = await this.startWebsocket(config.websocket, tlsOptions);
    return addresses;
  }

  /** Stops accepting; resolves once every connection is gone (see destroyConnections). */
  async close(): Promise<void> {
    this.tlsFiles?.stop();
    this.webSockets?.close();
    const servers = this.servers.splice(0);
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  destroyConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  private serverTlsOptions(tls: BrokerTlsConfig): TlsOptions {
    this.tlsFiles = new TlsFiles(
      { cert: tls.cert, key: tls.key, ...(tls.clientCa ? { ca: tls.clientCa } : {}) },
      { logger: this.o.logger, intervalMs: tls.reloadIntervalMs, what: 'broker.tls' },
    );
    const context = this.tlsFiles.load();
    if (!tls.clientCa) return context;
    // Without FAIL_IF_NO_PEER_CERT (optional), a client without a certificate passes the handshake; one with
    // a certificate its CA did not sign is refused either way (here, or in refuseUnverified).
    return { ...context, requestCert: true, rejectUnauthorized: tls.clientCertificates === 'required' };
  }

  /**
   * A client certificate that did not verify: closed unread. With required certificates Node has closed such
   * a connection already, silently; this reports the ones optional certificates let through the handshake.
   */
  private refuseUnverified(socket: TLSSocket): boolean {
    if (socket.destroyed) return true;
    if (socket.authorized || !hasPeerCertificate(socket)) return false;
    this.o.onCertificateRefused({ remote: socket.remoteAddress, err: String(socket.authorizationError) });
    socket.destroy();
    return true;
  }

  private async startWebsocket(
    ws: BrokerWebsocketConfig,
    tlsOptions: TlsOptions | undefined,
  ): Promise<HostPort> {
    const from = this.o.config.tls?.identityFrom ?? 'cn';
    const https = ws.tls && tlsOptions ? createHttpsServer(tlsOptions) : undefined;
    if (https) {
      this.tlsFiles?.watch(https);
      // Before the HTTP upgrade is read, as on the mqtts listener.
      https.on('secureConnection', (socket: TLSSocket) => this.refuseUnverified(socket));
    }
    const server = this.track(https ?? createHttpServer());
    const wss = new WebSocketServer({
      server,
      path: ws.path,
      // A frame holds one MQTT packet or a few; aedes refuses a packet over maxPacketSize after this.
      maxPayload: Math.max(2 * this.o.maxPacketSize, 65_536),
    });
    this.webSockets = wss;
    wss.on('connection', (socket, req) => {
      const tlsSocket = req.socket as TLSSocket;
      if (ws.tls && this.refuseUnverified(tlsSocket)) return;
      const stream = createWebSocketStream(socket);
      stream.on('error', () => {});
      this.o.accept(stream, req, ws.tls ? verifiedCertificate(tlsSocket, from) : undefined);
    });
    wss.on('error', (err) => this.o.logger.warn({ err: err.message }, 'websocket listener error'));
    return listen(server, ws.listen);
  }

  private track<S extends Server>(server: S): S {
    this.servers.push(server);
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
    });
    server.on('tlsClientError', (err: Error, socket: TLSSocket) =>
      this.o.logger.debug({ remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed'),
    );
    return server;
  }
}

function listen(server: Server, at: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('broker: no TCP address'));
      else resolve({ host: address.address, port: address.port });
    });
  });
}

function hasPeerCertificate(socket: TLSSocket): boolean {
  const cert = socket.getPeerCertificate();
  return cert !== null && Object.keys(cert).length > 0;
}

const SAN_PREFIX = { 'san-dns': 'DNS:', 'san-uri': 'URI:', 'san-email': 'email:' } as const;

/**
 * The client's verified certificate, if it presented one, with the name it gives its holder: the subject CN,
 * or the first subject alternative name of a type.
 */
export function verifiedCertificate(
  socket: TLSSocket,
  from: BrokerTlsConfig['identityFrom'],
): VerifiedCertificate | undefined {
  if (!socket.authorized || !hasPeerCertificate(socket)) return undefined;
  const cert = socket.getPeerCertificate();
  if (from === 'cn') {
    const cn: string | string[] | undefined = cert.subject?.CN;
    return { name: Array.isArray(cn) ? cn[0] : cn };
  }
  const prefix = SAN_PREFIX[from];
  const san = (cert.subjectaltname ?? '')
    .split(', ')
    .find((entry) => entry.startsWith(prefix))
    ?.slice(prefix.length);
  return { name: san?.replace(/^"(.*)"$/, '$1') };
}
