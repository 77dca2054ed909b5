// What the core's packet handlers share: the options it was built with and its per-broker state.
import type { PublishPacket } from 'aedes';
import type { Logger } from '../../util/logger.js';
import type { Authorizer } from '../auth.js';
import type { Ingest, Refuse } from '../refusals.js';
import type { AckWriter } from './acks.js';
import type { CoreConnection } from './connection.js';
import type { SweepOptions } from './keepalive.js';

/** aedes, as the core sees it. */
export interface AedesSide {
  /** aedes has this client connected, or keeps a session for it: such a CONNECT goes to aedes. */
  owns(clientId: string): boolean;
  /** Takes a connection the core gave up (its bytes already pushed back into the socket). */
  take(conn: CoreConnection): void;
  /** Routes an accepted PUBLISH to local subscribers and persistent sessions; `done` once queued for all. */
  publish(packet: PublishPacket, done: () => void): void;
}

export interface CoreOptions {
  authorizer: Authorizer;
  ingest: Ingest;
  refuse: Refuse;
  logger: Logger;
  aedes: AedesSide;
  /** Largest packet accepted, fixed header included; announced to MQTT 5 clients. */
  maxPacketSize: number;
  rateLimit: { messagesPerSecond: number; burst: number };
  /** QoS 1 PUBLISHes a client may have unacknowledged; announced to MQTT 5 clients, enforced for both. */
  receiveMaximum: number;
  topicAliasMaximum: number;
  sweep: SweepOptions;
}

export interface CoreContext {
  readonly o: CoreOptions;
  readonly acks: AckWriter;
  /** The CONNACKs that accept, by protocol version. */
  readonly connacks: Record<4 | 5, Buffer>;
  /** Connected clients of the core, by client id. */
  readonly clients: Map<string, CoreConnection>;
  /** Gives `conn` to aedes with `bytes` replayed (see handover.ts). */
  handOver(conn: CoreConnection, bytes: Buffer): void;
  /** Frames what arrived while CONNECT was being checked. */
  resume(conn: CoreConnection): void;
}
