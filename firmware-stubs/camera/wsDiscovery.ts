import { randomUUID } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Logger } from '../../src/util/logger.js';
import { type CameraModel, deviceServiceUrl } from './model.js';
import { el, ns } from './soap.js';
import { at, parseXml, textAt } from './xml.js';

const group = '239.255.255.250';
const port = 3702;
const maxDatagramBytes = 32_767;
const types = 'dn:NetworkVideoTransmitter tds:Device';
const answeredTypes = new Set(['NetworkVideoTransmitter', 'Device']);

interface Sequence {
  instanceId: number;
  messageNumber: number;
}

function envelope(header: string, body: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="${ns.soap}" xmlns:a="${ns.wsa}" ` +
    `xmlns:d="${ns.wsd}" xmlns:dn="${ns.dn}" xmlns:tds="${ns.tds}"><s:Header>${header}</s:Header>` +
    `<s:Body>${body}</s:Body></s:Envelope>`
  );
}

function header(action: string, to: string, seq: Sequence, relatesTo?: string): string {
  seq.messageNumber++;
  return (
    el('a:MessageID', `urn:uuid:${randomUUID()}`) +
    (relatesTo === undefined ? '' : el('a:RelatesTo', relatesTo)) +
    el('a:To', to) +
    el('a:Action', `${ns.wsd}/${action}`) +
    `<d:AppSequence InstanceId="${seq.instanceId}" MessageNumber="${seq.messageNumber}"/>`
  );
}

function endpointFields(model: CameraModel): string {
  return (
    `<a:EndpointReference>${el('a:Address', model.uuid)}</a:EndpointReference>` +
    el('d:Types', types) +
    el('d:Scopes', model.scopes.join(' ')) +
    el('d:XAddrs', deviceServiceUrl(model)) +
    el('d:MetadataVersion', model.metadataVersion)
  );
}

/** Does a Probe's Types (QNames, prefixes ignored) and Scopes (prefix match) select this camera? */
function matches(model: CameraModel, probeTypes: string, probeScopes: string): boolean {
  const wanted = probeTypes.split(/\s+/).filter(Boolean);
  const typeOk = wanted.length === 0 || wanted.some((t) => answeredTypes.has(t.split(':').pop() ?? ''));
  const scopes = probeScopes.split(/\s+/).filter(Boolean);
  const scopeOk = scopes.every((s) =>
    model.scopes.some((mine) => mine === s || mine.startsWith(`${s.replace(/\/$/, '')}/`)),
  );
  return typeOk && scopeOk;
}

/**
 * The camera's WS-Discovery side: answers Probes with a unicast ProbeMatch, announces Hello on start and
 * Bye on stop. The socket shares port 3702 with other cameras (reuseAddr) and is pinned to one interface.
 */
export class DiscoveryResponder {
  private readonly socket: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  private readonly seq: Sequence = { instanceId: Math.floor(Date.now() / 1000), messageNumber: 0 };

  constructor(
    private readonly model: CameraModel,
    private readonly interfaceAddress: string,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      // Bound to the group address, not 0.0.0.0: unicast to port 3702 from the real network never reaches a stub.
      this.socket.bind(port, group, () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
    this.socket.addMembership(group, this.interfaceAddress);
    this.socket.setMulticastInterface(this.interfaceAddress);
    this.socket.setMulticastTTL(1);
    this.socket.setMulticastLoopback(true);
    this.socket.on('message', (msg, from) => this.onMessage(msg, from));
    this.socket.on('error', (err) => this.logger.warn({ err: err.message }, 'ws-discovery socket error'));
    await this.hello();
  }

  hello(): Promise<void> {
    const to = 'urn:schemas-xmlsoap-org:ws:2005:04:discovery';
    return this.send(
      envelope(header('Hello', to, this.seq), `<d:Hello>${endpointFields(this.model)}</d:Hello>`),
      port,
      group,
    );
  }

  /** Says Bye and closes; `bye: false` closes without a word, as a camera whose power is cut. */
  async stop(bye = true): Promise<void> {
    const to = 'urn:schemas-xmlsoap-org:ws:2005:04:discovery';
    const body = `<d:Bye><a:EndpointReference>${el('a:Address', this.model.uuid)}</a:EndpointReference></d:Bye>`;
    if (bye) await this.send(envelope(header('Bye', to, this.seq), body), port, group).catch(() => undefined);
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private onMessage(message: Buffer, from: RemoteInfo): void {
    if (message.length > maxDatagramBytes || !message.includes('Probe')) return;
    const parsed = parseXml(message.toString('utf8'));
    const probe = at(parsed, 'Envelope', 'Body', 'Probe');
    const messageId = textAt(parsed, 'Envelope', 'Header', 'MessageID');
    if (!probe || !messageId) return;
    if (!matches(this.model, textAt(probe, 'Types') ?? '', textAt(probe, 'Scopes') ?? '')) return;
    const to = `${ns.wsa}/role/anonymous`;
    const reply = envelope(
      header('ProbeMatches', to, this.seq, messageId),
      `<d:ProbeMatches><d:ProbeMatch>${endpointFields(this.model)}</d:ProbeMatch></d:ProbeMatches>`,
    );
    this.send(reply, from.port, from.address).catch((err: Error) =>
      this.logger.warn({ err: err.message }, 'ProbeMatch not sent'),
    );
  }

  private send(xml: string, toPort: number, toAddress: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.send(xml, toPort, toAddress, (err) => (err ? reject(err) : resolve())),
    );
  }
}
