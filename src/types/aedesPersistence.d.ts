// aedes-persistence ships types only for its callback facade; this is the async in-memory class we extend.
declare module 'aedes-persistence/asyncPersistence.js' {
  import type { Readable } from 'node:stream';
  export default class MemoryPersistence {
    constructor(opts?: object);
    setup(broker: unknown): Promise<void>;
    storeRetained(packet: unknown): Promise<void>;
    createRetainedStreamCombi(patterns: string[]): Readable;
    addSubscriptions(client: unknown, subs: unknown): Promise<void>;
    removeSubscriptions(client: unknown, topics: unknown): Promise<void>;
    cleanSubscriptions(client: unknown): Promise<void>;
    outgoingEnqueue(sub: unknown, packet: unknown): Promise<void>;
    outgoingEnqueueCombi(subs: unknown, packet: unknown): Promise<void>;
    outgoingUpdate(client: unknown, packet: unknown): Promise<void>;
    outgoingClearMessageId(client: unknown, packet: unknown): Promise<unknown>;
    incomingStorePacket(client: unknown, packet: unknown): Promise<void>;
    incomingDelPacket(client: unknown, packet: unknown): Promise<void>;
    cleanIncoming(client: unknown): Promise<void>;
    putWill(client: unknown, packet: unknown): Promise<void>;
    delWill(client: unknown): Promise<unknown>;
    destroy(): Promise<void>;
  }
}
