// aedes-persistence ships types only for its callback facade; this is the async in-memory class we extend.
declare module 'aedes-persistence/asyncPersistence.js' {
  import type { Readable } from 'node:stream';
  export default class MemoryPersistence {
    constructor(opts?: object);
    setup(broker: unknown): Promise<void>;
    storeRetained(packet: unknown): Promise<void>;
    createRetainedStream(pattern: string): Readable;
    createRetainedStreamCombi(patterns: string[]): Readable;
    subscriptionsByClient(client: unknown): Promise<unknown[]>;
    countOffline(): Promise<{ subsCount: number; clientsCount: number }>;
    addSubscriptions(client: unknown, subs: unknown): Promise<void>;
    removeSubscriptions(client: unknown, topics: unknown): Promise<void>;
    cleanSubscriptions(client: unknown): Promise<void>;
    outgoingEnqueue(sub: unknown, packet: unknown): Promise<void>;
    outgoingEnqueueCombi(subs: unknown, packet: unknown): Promise<void>;
    outgoingUpdate(client: unknown, packet: unknown): Promise<void>;
    outgoingClearMessageId(client: unknown, packet: unknown): Promise<unknown>;
    outgoingStream(client: unknown): Readable;
    incomingStorePacket(client: unknown, packet: unknown): Promise<void>;
    incomingGetPacket(client: unknown, packet: unknown): Promise<unknown>;
    incomingDelPacket(client: unknown, packet: unknown): Promise<void>;
    cleanIncoming(client: unknown): Promise<void>;
    putWill(client: unknown, packet: unknown): Promise<void>;
    getWill(client: unknown): Promise<{ topic?: string } | undefined>;
    delWill(client: unknown): Promise<unknown>;
    destroy(): Promise<void>;
  }
  /** aedes-packet's Packet: a copy of `original` (message id cleared for QoS > 0), stamped by `broker`. */
  export class Packet {
    constructor(original: object, broker?: unknown);
  }
}
