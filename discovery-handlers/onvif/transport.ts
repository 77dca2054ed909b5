import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Logger } from '../../src/util/logger.js';
import { logError } from '../../src/util/logger.js';
import { wsDiscovery } from './namespaces.js';

export const DatagramSource = {
  /** Unicast replies (ProbeMatches) to our probe socket. */
  probe: 'probe',
  /** Multicast announcements (Hello, Bye) heard on the group. */
  group: 'group',
} as const;
export type DatagramSource = (typeof DatagramSource)[keyof typeof DatagramSource];

export type DatagramListener = (message: Buffer, from: RemoteInfo, source: DatagramSource) => void;

export interface DiscoveryTransport {
  sendProbe(xml: string): Promise<void>;
  close(): Promise<void>;
}

function bind(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port, address }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

/**
 * Opens the two WS-Discovery sockets, both tied to one interface address: a probe socket (port 0, multicast
 * interface pinned, TTL 1, so a probe can leave through no other interface) and a listener joined to the
 * group on that interface only.
 */
const RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;

export async function openTransport(
  address: string,
  listener: DatagramListener,
  logger: Logger,
): Promise<DiscoveryTransport> {
  // A burst of announcements (a site powering up, 200 cameras at once) overflows Linux's default ~208 KB
  // receive buffer while the agent is busy; 4 MB holds hundreds (the kernel caps it at net.core.rmem_max).
  const probe = createSocket({ type: 'udp4', recvBufferSize: RECEIVE_BUFFER_BYTES });
  const group = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: RECEIVE_BUFFER_BYTES });
  try {
    await bind(probe, 0, address);
    probe.setMulticastInterface(address);
    probe.setMulticastTTL(1);
    probe.setMulticastLoopback(true);
    await bind(group, wsDiscovery.port, wsDiscovery.group);
    group.addMembership(wsDiscovery.group, address);
  } catch (err) {
    for (const socket of [probe, group]) socket.close(() => undefined);
    throw err;
  }
  for (const [socket, source] of [
    [probe, DatagramSource.probe],
    [group, DatagramSource.group],
  ] as const) {
    socket.on('message', (message, from) => listener(message, from, source));
    socket.on('error', (err) => logError(logger, `ws-discovery ${source} socket error`, err));
  }
  return {
    sendProbe: (xml) =>
      new Promise((resolve, reject) =>
        probe.send(xml, wsDiscovery.port, wsDiscovery.group, (err) => (err ? reject(err) : resolve())),
      ),
    close: async () => {
      await Promise.all([probe, group].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
