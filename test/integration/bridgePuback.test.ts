// The upstream bridge's own QoS 1 publisher against a scripted upstream broker (mqtt-packet on a real socket) that
// answers each PUBLISH with the PUBACK reason code the test chooses: packet ids are never reused while in flight, a
// refused message is dropped and counted, a "retry later" one is sent again after a reconnect, in order.
import { createServer, type Server, type Socket } from 'node:net';
import { generate, type IPublishPacket, type Packet, parser } from 'mqtt-packet';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConfig } from '../../src/config/load.js';
import { openDb } from '../../src/database/db.js';
import { Outbox } from '../../src/database/outbox.js';
import { UpstreamBridge } from '../../src/sync/bridge.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';
import { captureLogs } from '../helpers/logs.js';
import { tempDir } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

const PREFIX = 'leafbridge/edge-1/';

interface Seen {
  connection: number;
  packetId: number;
  topic: string;
  msgId: string | undefined;
}

/** A broker that accepts any CONNECT and SUBSCRIBE and answers PUBLISHes as `answer` says (undefined: not yet). */
class ScriptedUpstream {
  readonly seen: Seen[] = [];
  /** Packet ids of this connection's PUBLISHes not yet answered; a reuse is recorded in `reused`. */
  readonly reused: number[] = [];
  connections = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly held: { socket: Socket; packetId: number }[] = [];
  /** Per connection, the packet ids of PUBLISHes held unanswered. */
  private readonly open = new Map<Socket, Set<number>>();

  constructor(
    private readonly version: 4 | 5,
    private readonly answer: (p: IPublishPacket, seen: Seen) => number | 'hold',
    /** Whether to hold the PUBACK of the agent's status PUBLISH on this connection (1, 2, …). */
    private readonly holdStatus: (connection: number) => boolean = () => false,
  ) {
    this.server = createServer((socket) => this.accept(socket));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address() as { port: number };
    return `mqtt://127.0.0.1:${address.port}`;
  }

  /** Answers every held PUBLISH with success. */
  releaseHeld(): void {
    for (const h of this.held.splice(0)) this.send(h.socket, { cmd: 'puback', messageId: h.packetId });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const connection = ++this.connections;
    const open = new Set<number>();
    this.open.set(socket, open);
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const p = parser({ protocolVersion: this.version });
    p.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect')
        this.send(socket, {
          cmd: 'connack',
          sessionPresent: false,
          ...(this.version === 5 ? { reasonCode: 0 } : { returnCode: 0 }),
        });
      else if (packet.cmd === 'subscribe')
        this.send(socket, {
          cmd: 'suback',
          messageId: packet.messageId,
          granted: packet.subscriptions.map(() => 1),
        });
      else if (packet.cmd === 'pingreq') this.send(socket, { cmd: 'pingresp' });
      else if (packet.cmd === 'publish' && packet.qos === 1) {
        const packetId = packet.messageId as number;
        const id = packet.properties?.userProperties?.['lb-msg-id'];
        const seen = { connection, packetId, topic: packet.topic, msgId: Array.isArray(id) ? id[0] : id };
        const status = packet.topic.endsWith('agent/status');
        if (!status) this.seen.push(seen);
        if (open.has(packetId)) this.reused.push(packetId);
        const code = status ? (this.holdStatus(connection) ? 'hold' : 0) : this.answer(packet, seen);
        if (code === 'hold') {
          open.add(packetId);
          this.held.push({ socket, packetId });
          return;
        }
        this.send(socket, { cmd: 'puback', messageId: packetId, ...(code ? { reasonCode: code } : {}) });
      }
    });
    // The answers to one chunk's packets go out in one write.
    socket.on('data', (data) => {
      socket.cork();
      p.parse(data);
      socket.uncork();
    });
  }

  private send(socket: Socket, packet: Packet): void {
    if (packet.cmd === 'puback') this.open.get(socket)?.delete(packet.messageId as number);
    if (!socket.destroyed) socket.write(generate(packet, { protocolVersion: this.version }));
  }
}

function upstreamConfig(url: string, version: 4 | 5, inflight: number): UpstreamConfig {
  return {
    url,
    prefix: 'leafbridge',
    clientId: 'edge-1-test',
    protocolVersion: version,
    keepaliveSeconds: 30,
    inflight,
    reconnect: { minDelayMs: 20, maxDelayMs: 50 },
    sessionExpirySeconds: 3600,
  };
}

describe('upstream bridge: its own QoS 1 PUBLISHes and their PUBACKs', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setup(
    version: 4 | 5,
    inflight: number,
    upstream: ScriptedUpstream,
    logger: Logger = silentLogger(),
  ) {
    const url = await upstream.listen();
    cleanups.push(() => upstream.close());
    const dir = tempDir();
    const db = openDb(dir.path, { synchronous: 'normal' });
    const outbox = new Outbox(db, { maxBytes: 1 << 30, overflow: 'drop-oldest' }, silentLogger());
    cleanups.push(() => {
      dir.remove();
    });
    cleanups.push(() => {
      outbox.close();
      db.close();
    });
    const bridge = new UpstreamBridge({
      config: upstreamConfig(url, version, inflight),
      node: 'edge-1',
      outbox,
      logger,
      onDownstream: () => {},
    });
    bridge.start();
    cleanups.push(() => bridge.stop());
    const append = (n: number) =>
      Promise.all(
        Array.from({ length: n }, (_, i) =>
          outbox.append({
            device: 'd1',
            topic: `devices/d1/telemetry/${i}`,
            payload: Buffer.from(String(i)),
          }),
        ),
      );
    return { outbox, bridge, append };
  }

  it('numbers the PUBLISHes in flight with distinct packet ids, and deletes each entry after its PUBACK (MQTT 3.1.1)', async () => {
    const upstream = new ScriptedUpstream(4, () => 'hold');
    const { outbox, bridge, append } = await setup(4, 100, upstream);
    await append(250);
    await until(() => upstream.seen.length === 100, 10_000, 'a full window of 100 in flight');
    expect(new Set(upstream.seen.map((s) => s.packetId)).size).toBe(100);
    for (let round = 0; round < 3; round++) {
      upstream.releaseHeld();
      await until(() => upstream.seen.length >= Math.min(250, 200 + round * 100), 10_000, 'the next window');
    }
    upstream.releaseHeld();
    await until(
      () => bridge.forwarded === 250 && outbox.messages === 0,
      10_000,
      'every entry acked and deleted',
    );
    expect(upstream.reused).toEqual([]);
    expect(upstream.seen.map((s) => s.topic)).toEqual(
      Array.from({ length: 250 }, (_, i) => `${PREFIX}devices/d1/telemetry/${i}`),
    );
    expect(upstream.connections).toBe(1);
  });

  it('drops and counts a message the upstream refuses (0x87), and sends the rest once', async () => {
    const upstream = new ScriptedUpstream(5, (p) => (p.topic.endsWith('/telemetry/3') ? 0x87 : 0));
    const { outbox, bridge, append } = await setup(5, 10, upstream);
    await append(20);
    await until(() => outbox.messages === 0, 10_000, 'the outbox emptied');
    expect(bridge.rejected).toBe(1);
    expect(bridge.forwarded).toBe(19);
    expect(upstream.seen).toHaveLength(20);
    expect(upstream.connections).toBe(1);
    expect(new Set(upstream.seen.map((s) => s.msgId)).size).toBe(20);
  });

  it('keeps a message answered "quota exceeded" (0x97) and sends it again after a reconnect, in order', async () => {
    let refusedOnce = false;
    const upstream = new ScriptedUpstream(5, (p) => {
      if (!refusedOnce && p.topic.endsWith('/telemetry/5')) {
        refusedOnce = true;
        return 0x97;
      }
      return 0;
    });
    const { outbox, bridge, append } = await setup(5, 1, upstream);
    await append(12);
    await until(() => outbox.messages === 0, 10_000, 'the outbox emptied');
    expect(upstream.connections).toBe(2);
    expect(bridge.rejected).toBe(0);
    expect(bridge.forwarded).toBe(12);
    const topics = upstream.seen.map((s) => s.topic.slice(PREFIX.length + 'devices/d1/telemetry/'.length));
    expect(topics).toEqual(['0', '1', '2', '3', '4', '5', '5', '6', '7', '8', '9', '10', '11']);
    // The same message id both times: the receiving side can drop a duplicate.
    const fives = upstream.seen.filter((s) => s.topic.endsWith('/telemetry/5'));
    expect(fives.map((s) => s.connection)).toEqual([1, 2]);
    expect(fives[0]?.msgId).toBe(fives[1]?.msgId);
  });

  it('after a "retry later" PUBACK nothing more goes on that link, though mqtt.js still awaits its own PUBACK', async () => {
    // With one message in flight the order is strict. The link is dropped at once: a graceful DISCONNECT would
    // wait for the status PUBLISH's PUBACK (held here), and what is appended meanwhile would overtake the refused one.
    let refusedOnce = false;
    const upstream = new ScriptedUpstream(
      5,
      (p) => {
        if (refusedOnce || !p.topic.endsWith('/telemetry/2')) return 0;
        refusedOnce = true;
        return 0x97;
      },
      (connection) => connection === 1,
    );
    const logs = captureLogs();
    const { outbox, append } = await setup(5, 1, upstream, logs.logger);
    await append(3);
    await until(
      () => logs.lines().some((l) => l.msg === 'upstream did not take a message'),
      10_000,
      'the refusal handled',
    );
    await Promise.all(
      [3, 4, 5].map((i) =>
        outbox.append({ device: 'd1', topic: `devices/d1/telemetry/${i}`, payload: Buffer.from('v') }),
      ),
    );
    upstream.releaseHeld();
    await until(() => outbox.messages === 0, 10_000, 'the outbox emptied');
    const sent = upstream.seen.map((s) => `${s.connection}:${s.topic.slice(s.topic.lastIndexOf('/') + 1)}`);
    expect(sent).toEqual(['1:0', '1:1', '1:2', '2:2', '2:3', '2:4', '2:5']);
    // The operator learns which message waits, and why.
    expect(logs.lines().find((l) => l.msg === 'upstream did not take a message')).toMatchObject({
      topic: 'devices/d1/telemetry/2',
      msgId: upstream.seen[2]?.msgId,
      reasonCode: 0x97,
    });
  });

  it('"unspecified" (0x80) and "implementation specific" (0x83) also mean retry later; 0x10 (no subscribers) is a success', async () => {
    const refused = new Set<string>();
    const upstream = new ScriptedUpstream(5, (p) => {
      const n = p.topic.slice(p.topic.lastIndexOf('/') + 1);
      if (n === '6') return 0x10;
      const code = n === '2' ? 0x80 : n === '4' ? 0x83 : 0;
      if (code === 0 || refused.has(n)) return 0;
      refused.add(n);
      return code;
    });
    const { outbox, bridge, append } = await setup(5, 1, upstream);
    await append(8);
    await until(() => outbox.messages === 0, 10_000, 'the outbox emptied');
    expect(upstream.connections).toBe(3);
    expect(bridge.rejected).toBe(0);
    expect(bridge.forwarded).toBe(8);
    const topics = upstream.seen.map((s) => s.topic.slice(s.topic.lastIndexOf('/') + 1));
    expect(topics).toEqual(['0', '1', '2', '2', '3', '4', '4', '5', '6', '7']);
  });

  it('a message MQTT cannot carry (a topic over 65,535 bytes) is dropped, counted and logged; the rest of its batch goes', async () => {
    const upstream = new ScriptedUpstream(5, () => 0);
    const logs = captureLogs();
    const { outbox, bridge } = await setup(5, 10, upstream, logs.logger);
    const long = `devices/d1/telemetry/${'x'.repeat(70_000)}`;
    await Promise.all(
      ['devices/d1/telemetry/a', long, 'devices/d1/telemetry/b'].map((topic) =>
        outbox.append({ device: 'd1', topic, payload: Buffer.from('v') }),
      ),
    );
    await until(() => outbox.messages === 0, 10_000, 'the outbox emptied');
    expect(bridge.rejected).toBe(1);
    expect(bridge.forwarded).toBe(2);
    expect(upstream.seen.map((s) => s.topic)).toEqual([
      `${PREFIX}devices/d1/telemetry/a`,
      `${PREFIX}devices/d1/telemetry/b`,
    ]);
    expect(upstream.connections).toBe(1);
    // The log names the dropped message: its topic and its id (the one between a's and b's).
    const [epoch, seq] = String(upstream.seen[0]?.msgId).split('-');
    expect(upstream.seen[1]?.msgId).toBe(`${epoch}-${Number(seq) + 2}`);
    expect(logs.lines().find((l) => l.msg === 'message cannot be sent upstream; dropped')).toMatchObject({
      topic: long,
      msgId: `${epoch}-${Number(seq) + 1}`,
    });
  });

  it('skips a packet id still in flight when the id sequence comes round to it again, 65,535 ids later', async () => {
    // The first message stays unanswered while 65,600 more go through: mqtt.js's counter wraps after 65,535
    // and comes back to the held message's id, which no other PUBLISH may take while it is in flight.
    const after = 65_600;
    const upstream = new ScriptedUpstream(4, (p) => (p.topic.endsWith('/telemetry/0') ? 'hold' : 0));
    const { outbox, bridge } = await setup(4, 2_000, upstream);
    // appendThen: 65,601 promises would cost more than the round trips.
    await new Promise<void>((resolve, reject) => {
      let left = 1 + after;
      for (let i = 0; i <= after; i++)
        outbox.appendThen(
          { device: 'd1', topic: `devices/d1/telemetry/${i}`, payload: Buffer.from('v') },
          (err) => (err ? reject(err) : --left === 0 && resolve()),
        );
    });
    await until(() => bridge.forwarded === after, 30_000, 'every message but the held one acknowledged');
    expect(upstream.reused).toEqual([]);
    const [held, ...rest] = upstream.seen;
    expect(held?.topic).toBe(`${PREFIX}devices/d1/telemetry/0`);
    // The ones after it used every other id, and not the held one.
    const ids = new Set(rest.map((s) => s.packetId));
    expect(ids.size).toBe(65_534);
    expect(ids.has(held?.packetId as number)).toBe(false);
    expect(outbox.messages).toBe(1);
    upstream.releaseHeld();
    await until(() => outbox.messages === 0, 10_000, 'the held message acknowledged and deleted');
    expect(bridge.forwarded).toBe(1 + after);
    expect(upstream.connections).toBe(1);
  });
});
