import { randomUUID } from 'node:crypto';
import { ns, wsDiscovery } from './namespaces.js';
import { at, children, parseXml, textAt, type XmlElement } from './xml.js';

/** One camera as WS-Discovery describes it (a ProbeMatch, or a Hello). */
export interface Endpoint {
  /** EndpointReference/Address, e.g. `urn:uuid:…`. */
  address: string;
  types: string[];
  scopes: string[];
  xaddrs: string[];
  metadataVersion: number;
}

export type DiscoveryMessage =
  | { kind: 'probeMatches'; relatesTo: string; endpoints: Endpoint[] }
  | { kind: 'hello'; endpoint: Endpoint }
  | { kind: 'bye'; address: string }
  | { kind: 'other'; action: string };

/** Most cameras answer with one ProbeMatch; more than this per datagram is not believed. */
const maxMatchesPerMessage = 16;
const maxListItems = 64;
const maxFieldLength = 1_024;

export function newMessageId(): string {
  return `urn:uuid:${randomUUID()}`;
}

/** A Probe for ONVIF devices (dn:NetworkVideoTransmitter), as ONVIF Core §7.3 asks for. */
export function buildProbe(messageId: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<s:Envelope xmlns:s="${ns.soap}" xmlns:a="${ns.wsa}" xmlns:d="${ns.wsd}" xmlns:dn="${ns.dn}">` +
    '<s:Header>' +
    `<a:Action s:mustUnderstand="1">${wsDiscovery.probeAction}</a:Action>` +
    `<a:MessageID>${messageId}</a:MessageID>` +
    `<a:ReplyTo><a:Address>${ns.wsa}/role/anonymous</a:Address></a:ReplyTo>` +
    `<a:To s:mustUnderstand="1">${wsDiscovery.to}</a:To>` +
    '</s:Header>' +
    '<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>' +
    '</s:Envelope>'
  );
}

/** Reads a WS-Discovery datagram. Throws (OnvifError) on hostile or malformed XML; the caller drops it. */
export function parseDiscoveryMessage(text: string): DiscoveryMessage {
  const envelope = at(parseXml(text), 'Envelope');
  const header = at(envelope, 'Header');
  const body = at(envelope, 'Body');
  const action = textAt(header, 'Action') ?? '';
  const matches = at(body, 'ProbeMatches');
  if (matches || action.endsWith('/ProbeMatches')) {
    const endpoints = children(matches, 'ProbeMatch').slice(0, maxMatchesPerMessage).map(readEndpoint);
    return {
      kind: 'probeMatches',
      relatesTo: textAt(header, 'RelatesTo') ?? '',
      endpoints: valid(endpoints),
    };
  }
  const hello = at(body, 'Hello');
  if (hello) {
    const endpoint = readEndpoint(hello);
    return endpoint.address ? { kind: 'hello', endpoint } : { kind: 'other', action };
  }
  const bye = at(body, 'Bye');
  const byeAddress = bye && bounded(textAt(bye, 'EndpointReference', 'Address'));
  if (byeAddress) return { kind: 'bye', address: byeAddress };
  return { kind: 'other', action };
}

function valid(endpoints: Endpoint[]): Endpoint[] {
  return endpoints.filter((e) => e.address.length > 0);
}

function readEndpoint(element: XmlElement): Endpoint {
  const version = Number(textAt(element, 'MetadataVersion') ?? '0');
  return {
    address: bounded(textAt(element, 'EndpointReference', 'Address')) ?? '',
    types: list(textAt(element, 'Types')),
    scopes: list(textAt(element, 'Scopes')),
    xaddrs: list(textAt(element, 'XAddrs')),
    metadataVersion: Number.isSafeInteger(version) ? version : 0,
  };
}

function bounded(value: string | undefined): string | undefined {
  return value && value.length <= maxFieldLength ? value : undefined;
}

function list(value: string | undefined): string[] {
  if (!value) return [];
  return value
    .split(/\s+/)
    .filter((item) => item.length > 0 && item.length <= maxFieldLength)
    .slice(0, maxListItems);
}
