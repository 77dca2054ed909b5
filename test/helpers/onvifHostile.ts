import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { createServer as createNetServer } from 'node:net';

const group = '239.255.255.250';
const ns = {
  s: 'http://www.w3.org/2003/05/soap-envelope',
  a: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  d: 'http://schemas.xmlsoap.org/ws/2005/04/discovery',
};

function envelope(header: string, body: string): string {
  return `<s:Envelope xmlns:s="${ns.s}" xmlns:a="${ns.a}" xmlns:d="${ns.d}"><s:Header>${header}</s:Header><s:Body>${body}</s:Body></s:Envelope>`;
}

function endpoint(uuid: string, xaddr: string): string {
  return (
    `<a:EndpointReference><a:Address>urn:uuid:${uuid}</a:Address></a:EndpointReference>` +
    `<d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>onvif://www.onvif.org/name/hostile</d:Scopes>` +
    `<d:XAddrs>${xaddr}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>`
  );
}

export function probeMatchXml(relatesTo: string, uuid: string, xaddr: string): string {
  return envelope(
    `<a:RelatesTo>${relatesTo}</a:RelatesTo><a:Action>${ns.d}/ProbeMatches</a:Action>`,
    `<d:ProbeMatches><d:ProbeMatch>${endpoint(uuid, xaddr)}</d:ProbeMatch></d:ProbeMatches>`,
  );
}

export function helloXml(uuid: string, xaddr: string): string {
  return envelope(`<a:Action>${ns.d}/Hello</a:Action>`, `<d:Hello>${endpoint(uuid, xaddr)}</d:Hello>`);
}

export function byeXml(uuid: string): string {
  return envelope(
    `<a:Action>${ns.d}/Bye</a:Action>`,
    `<d:Bye><a:EndpointReference><a:Address>urn:uuid:${uuid}</a:Address></a:EndpointReference></d:Bye>`,
  );
}

/** The classic entity-expansion bomb: ten levels of ten, a billion "lol"s if anything expands it. */
export function billionLaughs(): string {
  const levels = ['<!ENTITY lol0 "lol">'];
  for (let i = 1; i <= 9; i++) levels.push(`<!ENTITY lol${i} "${`&lol${i - 1};`.repeat(10)}">`);
  return `<?xml version="1.0"?><!DOCTYPE lolz [${levels.join('')}]><s:Envelope xmlns:s="${ns.s}"><s:Body>&lol9;</s:Body></s:Envelope>`;
}

/** A UDP socket on loopback that sends to the WS-Discovery group, pinned to 127.0.0.1, TTL 1. */
export async function loopbackSender(): Promise<{
  send(xml: string | Buffer): Promise<void>;
  close(): void;
}> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.setMulticastInterface('127.0.0.1');
  socket.setMulticastTTL(1);
  socket.setMulticastLoopback(true);
  return {
    send: (xml) =>
      new Promise((resolve, reject) => socket.send(xml, 3702, group, (e) => (e ? reject(e) : resolve()))),
    close: () => socket.close(),
  };
}

/**
 * A fake WS-Discovery responder on loopback: for each Probe it hears, `answer(messageId)` returns the
 * datagrams to send back (unicast to the prober), sent in batches so the receiver gets to read them.
 */
export async function fakeResponder(
  answer: (probeMessageId: string) => string[],
): Promise<{ probes: number; stop(): Promise<void> }> {
  const socket: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve) => socket.bind(3702, group, resolve));
  socket.addMembership(group, '127.0.0.1');
  socket.setMulticastInterface('127.0.0.1');
  socket.setMulticastTTL(1);
  const state = { probes: 0, stop: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
  socket.on('message', (msg, from) => {
    const text = msg.toString('utf8');
    const id = /<[^>]*MessageID>([^<]+)</.exec(text)?.[1];
    if (!text.includes('Probe>') && !text.includes(':Probe')) return;
    if (!id) return;
    state.probes++;
    void sendBatched(socket, answer(id), from.port, from.address);
  });
  return state;
}

async function sendBatched(
  socket: Socket,
  datagrams: string[],
  port: number,
  address: string,
): Promise<void> {
  for (let i = 0; i < datagrams.length; i += 100) {
    try {
      for (const d of datagrams.slice(i, i + 100)) socket.send(d, port, address, () => undefined);
    } catch {
      return; // the test closed the socket while a flood was still going out: the rest is not sent
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export const HostileMode = {
  oversized: 'oversized',
  malformed: 'malformed',
  billionLaughs: 'billionLaughs',
  hang: 'hang',
} as const;
export type HostileMode = (typeof HostileMode)[keyof typeof HostileMode];

export interface HostileServer {
  url: string;
  /** Bytes the server managed to write before the client went away. */
  bytesWritten(): number;
  stop(): Promise<void>;
}

/** A SOAP endpoint that misbehaves in one way, for every request. */
export async function hostileSoapServer(mode: HostileMode, address = '127.0.0.1'): Promise<HostileServer> {
  let written = 0;
  const sockets = new Set<NetSocket>();
  const server: Server = createServer((req, res) => {
    req.resume();
    if (mode === HostileMode.hang) return;
    if (mode === HostileMode.malformed) {
      res.end(`<s:Envelope xmlns:s="${ns.s}"><s:Body><GetDeviceInformationResponse><Model>x</Mod`);
      return;
    }
    if (mode === HostileMode.billionLaughs) {
      res.end(billionLaughs());
      return;
    }
    streamForever(res, (n) => {
      written += n;
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${address}:${port}/onvif/device_service`,
    bytesWritten: () => written,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Writes an endless SOAP body (chunked, no Content-Length) until the client hangs up; at most 256 MiB. */
function streamForever(res: import('node:http').ServerResponse, count: (bytes: number) => void): void {
  const chunk = Buffer.from(`<Model>${'A'.repeat(65_000)}</Model>`);
  res.writeHead(200, { 'Content-Type': 'application/soap+xml' });
  res.write(`<s:Envelope xmlns:s="${ns.s}"><s:Body><GetDeviceInformationResponse>`);
  let total = 0;
  const pump = () => {
    while (total < 256 * 1024 * 1024 && !res.destroyed) {
      total += chunk.length;
      count(chunk.length);
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => undefined);
  pump();
}

/** A TCP port on 127.0.0.1 with nothing listening (connections are refused at once). */
export async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
