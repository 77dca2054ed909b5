// An MQTT client made of mqtt-packet over a net.Socket: every packet the broker sends is seen as it came,
// and nothing is acknowledged unless the test says so. For the conformance suite (test/conformance/).
import { type Socket, connect as tcpConnect } from 'node:net';
import {
  generate,
  type IConnackPacket,
  type IConnectPacket,
  type IPublishPacket,
  type ISubscription,
  type Packet,
  type PacketCmd,
  parser,
} from 'mqtt-packet';

export type Version = 4 | 5;
type Of<C extends PacketCmd> = Extract<Packet, { cmd: C }>;
export type ConnectOptions = Omit<IConnectPacket, 'cmd' | 'protocolVersion'>;
export type PublishOptions = Pick<IPublishPacket, 'topic' | 'payload' | 'qos'> &
  Partial<Pick<IPublishPacket, 'retain' | 'properties'>>;

interface Waiter {
  pick: (p: Packet) => boolean;
  resolve: (p: Packet) => void;
}

/**
 * One connection. Packets from the broker queue up in `unread` until a `next` takes them; every PUBLISH is
 * also kept in `publishes`. With `autoAck` (the default) incoming QoS 1/2 PUBLISHes are acknowledged and a
 * PUBREL is answered with PUBCOMP; without it the test acknowledges by hand, or never.
 */
export class RawClient {
  readonly publishes: IPublishPacket[] = [];
  readonly unread: Packet[] = [];
  autoAck = true;
  /** Resolves when the socket closed, from either side. */
  readonly closed: Promise<void>;
  isClosed = false;
  private readonly waiters = new Set<Waiter>();
  private packetId = 0;

  private constructor(
    private readonly socket: Socket,
    readonly version: Version,
  ) {
    const p = parser({ protocolVersion: version });
    p.on('packet', (packet) => this.receive(packet));
    p.on('error', () => socket.destroy());
    socket.on('data', (data) => p.parse(data));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  /**
   * Opens a connection and sends CONNECT (or `options` as they are, for a CONNECT mqtt-packet will not
   * write); resolves with the CONNACK, whatever its code.
   */
  static async open(
    port: number,
    version: Version,
    options: ConnectOptions | Buffer,
    ms = 5000,
  ): Promise<{ client: RawClient; connack: IConnackPacket }> {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawClient(socket, version);
    if (Buffer.isBuffer(options)) socket.write(options);
    else client.send({ cmd: 'connect', protocolVersion: version, keepalive: 30, ...options });
    const connack = await client.next('connack', undefined, ms);
    return { client, connack };
  }

  /** Like `open`, but throws unless the broker accepted the connection. */
  static async connect(port: number, version: Version, options: ConnectOptions): Promise<RawClient> {
    const { client, connack } = await RawClient.open(port, version, options);
    const code = connack.reasonCode ?? connack.returnCode ?? 0;
    if (code !== 0) {
      client.destroy();
      throw new Error(`CONNECT of ${options.clientId || '(empty id)'} refused: code ${code}`);
    }
    return client;
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: this.version }));
  }

  /** The first unread packet of `cmd` for which `pick` holds (now or within `ms`); taken from `unread`. */
  next<C extends PacketCmd>(cmd: C, pick: (p: Of<C>) => boolean = () => true, ms = 3000): Promise<Of<C>> {
    const matches = (p: Packet): p is Of<C> => p.cmd === cmd && pick(p as Of<C>);
    const index = this.unread.findIndex(matches);
    if (index >= 0) return Promise.resolve(this.unread.splice(index, 1)[0] as Of<C>);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { pick: matches, resolve: (p) => done(() => resolve(p as Of<C>)) };
      const timer = setTimeout(() => done(() => reject(new Error(`no ${cmd} within ${ms} ms`))), ms);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        settle();
      };
      this.waiters.add(waiter);
    });
  }

  /** The next PUBLISH on `topic`. */
  message(topic: string, ms = 3000): Promise<IPublishPacket> {
    return this.next('publish', (p) => p.topic === topic, ms);
  }

  /** PUBLISHes received so far on `topic`. */
  on(topic: string): IPublishPacket[] {
    return this.publishes.filter((p) => p.topic === topic);
  }

  /** SUBSCRIBE and wait for the SUBACK: the granted QoS or reason code per filter. */
  async subscribe(
    subscriptions: ISubscription[],
    properties?: { subscriptionIdentifier?: number },
  ): Promise<number[]> {
    const messageId = this.nextId();
    this.send({ cmd: 'subscribe', messageId, subscriptions, ...(properties ? { properties } : {}) });
    const suback = await this.next('suback', (p) => p.messageId === messageId);
    return suback.granted as number[];
  }

  async unsubscribe(topics: string[]): Promise<number[]> {
    const messageId = this.nextId();
    this.send({ cmd: 'unsubscribe', messageId, unsubscriptions: topics });
    const unsuback = await this.next('unsuback', (p) => p.messageId === messageId);
    return unsuback.granted ?? [];
  }

  /** PUBLISH and complete its QoS flow; resolves with the PUBACK/PUBREC reason code (0 for QoS 0). */
  async publish(message: PublishOptions): Promise<number> {
    const messageId = message.qos > 0 ? this.nextId() : undefined;
    this.send({ cmd: 'publish', dup: false, retain: false, ...message, ...(messageId ? { messageId } : {}) });
    if (message.qos === 0) return 0;
    if (message.qos === 1) {
      const ack = await this.next('puback', (p) => p.messageId === messageId);
      return ack.reasonCode ?? 0;
    }
    const rec = await this.next('pubrec', (p) => p.messageId === messageId);
    if ((rec.reasonCode ?? 0) >= 0x80) return rec.reasonCode ?? 0;
    this.send({ cmd: 'pubrel', messageId });
    await this.next('pubcomp', (p) => p.messageId === messageId);
    return rec.reasonCode ?? 0;
  }

  /** Acknowledges one received PUBLISH (PUBACK, or PUBREC for QoS 2). */
  ack(publish: IPublishPacket): void {
    if (publish.qos === 1) this.send({ cmd: 'puback', messageId: publish.messageId });
    if (publish.qos === 2) this.send({ cmd: 'pubrec', messageId: publish.messageId });
  }

  /** A normal DISCONNECT (no will), then the socket ends. */
  async disconnect(properties?: { sessionExpiryInterval?: number }): Promise<void> {
    if (this.isClosed) return;
    this.send({ cmd: 'disconnect', ...(properties ? { properties } : {}) });
    this.socket.end();
    await this.closed;
  }

  /** The connection drops without DISCONNECT, as a network failure or a crash does (the will is sent). */
  async destroy(): Promise<void> {
    this.socket.destroy();
    await this.closed;
  }

  private nextId(): number {
    this.packetId = (this.packetId % 65535) + 1;
    return this.packetId;
  }

  private receive(packet: Packet): void {
    if (packet.cmd === 'publish') {
      this.publishes.push(packet);
      if (this.autoAck) this.ack(packet);
    }
    if (packet.cmd === 'pubrel' && this.autoAck) this.send({ cmd: 'pubcomp', messageId: packet.messageId });
    for (const waiter of this.waiters) {
      if (waiter.pick(packet)) {
        waiter.resolve(packet);
        return;
      }
    }
    this.unread.push(packet);
  }
}
