// What a minimal MQTT core of our own costs on the edge, measured with the agent's real pieces: a plain net
// server, one mqtt-packet parser per socket, CONNECT authenticated by the agent's Authorizer (built from the
// bench's config as the agent builds it), CONNACK, each PUBLISH through the ACL and the rate limit into the
// real SyncEngine.ingest and Outbox (SQLite in a temp dir), the PUBACK written after the commit (all the
// PUBACKs one commit releases to one socket in one buffer), PINGREQ and DISCONNECT; the real UpstreamBridge
// forwards the outbox to an upstream mosquitto with a counting subscriber, as the edge bench does. No aedes: no
// will, retained, subscriptions, sessions, takeover, keepalive, topic aliases or receive maximum
// (docs/performance.md, "Fifth round"). Variant `aedes` also hands every accepted PUBLISH to an aedes broker on
// the same database (EdgePersistence) before the PUBACK, as the agent does, to price local delivery; variant
// `nostore` PUBACKs at once and stores and forwards nothing (mqttFloor's server, but with these clients).
//
// Clients run in other processes, so the CPU counted (/proc/self/stat) is the edge's alone: `slow` is the edge
// bench's slow shape (bench/lib/sensors.js, 3 processes, 1 message a second each, as slowShape.mjs runs it);
// `burst` is mqttFloor.mjs's clients (ROUNDS of one message each, all at once), to compare with that floor.
// The probe runs itself with the agent's heap flags (src/cli/runtime.ts) and --expose-gc: memory per connection
// is given as the bench measures it and again after a full GC on both sides (its CPU counted in neither phase).
// Uses the built tree (npm run build).
// BATCH_MS > 0 holds accepted PUBLISHes that long and ingests them together (group commit over a window, done by
// the core; the PUBACK waits that much longer).
//   node bench/probes/fastCore.mjs [core|aedes|nostore] [SENSORS=1500] [SECONDS=10] [slow|burst] [BATCH_MS=0]
import { fork, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);
const dist = (p) => import(fileURLToPath(new URL(`../../dist/${p}`, import.meta.url)));
const { AGENT_NODE_FLAGS } = await dist('src/cli/runtime.js');
if (!process.execArgv.some((a) => /^--max-(old-space|semi-space|heap)-size\b/.test(a))) {
  const r = spawnSync(
    process.execPath,
    [...AGENT_NODE_FLAGS, '--expose-gc', here, ...process.argv.slice(2)],
    {
      stdio: 'inherit',
    },
  );
  process.exit(r.status ?? 1);
}

const require = createRequire(import.meta.url);
const mqttPacket = require('mqtt-packet');
// As src/broker/edgeBroker.ts does for the agent: no table of 65,536 packet-id Buffers in mqtt.js's encoder.
mqttPacket.writeToStream.cacheNumbers = false;
const [{ parseConfig }, { openDb }, { Outbox }, { WriteHealth }, { TwinStore }, { CommandStore }] =
  await Promise.all([
    dist('src/config/load.js'),
    dist('src/database/db.js'),
    dist('src/database/outbox.js'),
    dist('src/database/writeHealth.js'),
    dist('src/sync/twins.js'),
    dist('src/sync/commands.js'),
  ]);
const [
  { SyncEngine },
  { UpstreamBridge },
  { authorizerFromConfig },
  { TokenBucket },
  { silentLogger },
  { systemClock },
] = await Promise.all([
  dist('src/sync/engine.js'),
  dist('src/sync/bridge.js'),
  dist('src/broker/authorizerFromConfig.js'),
  dist('src/broker/rateLimit.js'),
  dist('src/util/logger.js'),
  dist('src/util/clock.js'),
]);
const { MosquittoProcess } = await dist('bench/lib/mosquitto.js');
const { BenchChild, lib, readMemory, Scope, sleep, tempDir } = await dist('bench/lib/util.js');

const [variant = 'core', sensorsArg = '1500', secondsArg = '10', clientsKind = 'slow', batchArg = '0'] =
  process.argv.slice(2);
const sensors = Number(sensorsArg);
const seconds = Number(secondsArg);
const batchMs = Number(batchArg);
const ticks = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};
const memory = () => readMemory(process.pid);
/** RSS after a full GC (run with --expose-gc), so that garbage does not blur memory per connection. */
const settledMemory = () => {
  globalThis.gc?.();
  const { heapUsed, external } = process.memoryUsage();
  return { ...memory(), jsMB: (heapUsed + external) / 2 ** 20 };
};

const PINGRESP = Buffer.from([0xd0, 0]);
const CONNACK = { 4: Buffer.from([0x20, 2, 0, 0]), 5: Buffer.from([0x20, 3, 0, 0, 0]) };
/** MQTT 5 reason codes used here. */
const RC = {
  unspecified: 0x80,
  notAuthorized: 0x87,
  badCredentials: 0x86,
  quota: 0x97,
  qosNotSupported: 0x9b,
};

/** The core: sockets, parsers, authentication, ingest, PUBACKs after the commit. */
function createCore({ authorizer, engine, writeHealth, rateLimit, aedes, batchMs }) {
  const stats = { connected: 0, refused: 0, acked: 0, ackWrites: 0 };
  /** Connections with PUBACKs waiting; written once the current commit's callbacks have all run. */
  const dirty = new Set();
  let flushQueued = false;
  const flushAcks = () => {
    flushQueued = false;
    for (const conn of dirty) {
      const ids = conn.acks;
      conn.acks = [];
      const buf = Buffer.allocUnsafe(4 * ids.length);
      for (let i = 0; i < ids.length; i++) {
        buf[4 * i] = 0x40;
        buf[4 * i + 1] = 2;
        buf[4 * i + 2] = ids[i] >> 8;
        buf[4 * i + 3] = ids[i] & 255;
      }
      if (!conn.socket.destroyed) conn.socket.write(buf);
      stats.acked += ids.length;
      stats.ackWrites++;
    }
    dirty.clear();
  };
  const ack = (conn, id) => {
    conn.acks.push(id);
    dirty.add(conn);
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flushAcks); // after the outbox has told every caller of this commit
    }
  };
  /** A refused QoS 1 PUBLISH: MQTT 5 hears why in its PUBACK; 3.1.1, which cannot, is disconnected. */
  const nack = (conn, packet, code) => {
    stats.refused++;
    if (conn.version !== 5) conn.socket.destroy();
    else if (packet.qos === 1)
      conn.socket.write(Buffer.from([0x40, 3, packet.messageId >> 8, packet.messageId & 255, code]));
  };

  const onConnect = (conn, p) => {
    conn.version = p.protocolVersion;
    conn.clientId = p.clientId;
    authorizer.authenticate(p.username, p.password).then(
      (result) => {
        if (conn.socket.destroyed) return;
        if (!result.ok) {
          stats.refused++;
          const anon = result.reason === 'anonymous-refused';
          conn.socket.end(
            conn.version === 5
              ? Buffer.from([0x20, 3, 0, anon ? RC.notAuthorized : RC.badCredentials, 0])
              : Buffer.from([0x20, 2, 0, anon ? 5 : 4]),
          );
          return;
        }
        conn.identity = result.identity;
        conn.bucket = new TokenBucket(rateLimit.messagesPerSecond, rateLimit.burst);
        stats.connected++;
        conn.socket.write(CONNACK[conn.version === 5 ? 5 : 4]);
      },
      () => conn.socket.destroy(),
    );
  };

  const onPublish = (conn, p) => {
    if (p.qos === 2) {
      // Not supported by this core: MQTT 5 hears why.
      if (conn.version === 5) conn.socket.end(Buffer.from([0xe0, 2, RC.qosNotSupported, 0]));
      else conn.socket.destroy();
      return;
    }
    if (!authorizer.canPublish(conn.identity, p.topic)) return nack(conn, p, RC.notAuthorized);
    if (!conn.bucket.take()) return nack(conn, p, RC.quota);
    if (!engine) {
      if (p.qos === 1) ack(conn, p.messageId);
    } else if (batchMs <= 0) ingest(conn, p);
    else {
      held.push(conn, p);
      if (!heldQueued) {
        heldQueued = true;
        setTimeout(releaseHeld, batchMs);
      }
    }
  };
  /** PUBLISHes held for BATCH_MS, then ingested in one turn: one commit, one upstream write for them all. */
  const held = [];
  let heldQueued = false;
  const releaseHeld = () => {
    heldQueued = false;
    const batch = held.splice(0);
    for (let i = 0; i < batch.length; i += 2) ingest(batch[i], batch[i + 1]);
  };
  const ingest = (conn, p) =>
    engine.ingest(conn.identity, conn.clientId, p, (err) => {
      if (err) {
        writeHealth.failed(err);
        return nack(conn, p, RC.unspecified);
      }
      if (aedes) aedes.publish(p, () => p.qos === 1 && ack(conn, p.messageId));
      else if (p.qos === 1) ack(conn, p.messageId);
    });

  const onPacket = (conn, p) => {
    if (!conn.identity && p.cmd !== 'connect') {
      conn.socket.destroy(); // nothing but CONNECT before CONNACK (a pipelined PUBLISH would be lost here)
      return;
    }
    switch (p.cmd) {
      case 'connect':
        if (conn.version) conn.socket.destroy();
        else onConnect(conn, p);
        return;
      case 'publish':
        return onPublish(conn, p);
      case 'pingreq':
        conn.socket.write(PINGRESP);
        return;
      case 'disconnect':
        conn.socket.end();
        return;
      default:
        conn.socket.destroy(); // subscriptions and QoS 2 are not this core's (see the header)
    }
  };

  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    const conn = { socket, parser: mqttPacket.parser(), version: 0, clientId: '', acks: [] };
    conn.parser.on('packet', (p) => onPacket(conn, p));
    conn.parser.on('error', () => socket.destroy());
    socket.on('data', (d) => conn.parser.parse(d));
    socket.on('error', () => {});
  });
  return { server, stats };
}

/** The upstream mosquitto and its counting subscriber, the store, the engine, the bridge and the core. */
async function setUp(scope) {
  const upDir = scope.add(tempDir('lb-fastcore-up-'), (d) => d.remove());
  const upstream = scope.add(new MosquittoProcess(upDir.path), (m) => m.stop());
  await upstream.start();
  const sub = scope.add(new BenchChild('subscriber', lib('subscriber.js')), (c) => c.stop());
  await sub.request(
    { cmd: 'connect', url: upstream.url, filter: 'leafbridge/+/devices/#' },
    'subscribed',
    10_000,
  );
  const dir = scope.add(tempDir('lb-fastcore-edge-'), (d) => d.remove());
  // The edge bench's agent config (bench/lib/edgeRuns.ts), parsed as the agent parses it.
  const config = parseConfig(
    {
      node: 'bench-1',
      dataDir: join(dir.path, 'data'),
      broker: { listen: '127.0.0.1:0', rateLimit: { messagesPerSecond: 1e6, burst: 1e6 } },
      upstream: {
        url: upstream.url,
        prefix: 'leafbridge',
        protocolVersion: 5,
        inflight: 1000,
        reconnect: { minDelay: '50ms', maxDelay: '250ms' },
      },
      store: { synchronous: 'normal' },
      auth: { allowAnonymous: true },
      kubernetes: 'off',
    },
    dir.path,
  );
  const logger = silentLogger();
  const db = scope.add(openDb(config.dataDir, config.store), (d) => d.close());
  const writeHealth = scope.add(new WriteHealth({ db, logger, clock: systemClock }), (w) => w.stop());
  const outbox = scope.add(new Outbox(db, config.outbox, logger, writeHealth), (o) => o.close());
  const engine = new SyncEngine({
    logger,
    outbox,
    twins: new TwinStore(db),
    commands: new CommandStore(db),
    commandTtlMs: config.commands.ttlMs,
  });
  let aedes;
  if (variant === 'aedes') {
    const [{ Aedes }, { EdgePersistence, shapeDelivery }] = await Promise.all([
      import('aedes'),
      dist('src/broker/delivery.js'),
    ]);
    aedes = await Aedes.createBroker({
      persistence: new EdgePersistence(db),
      authorizeForward: shapeDelivery,
    });
    scope.add(aedes, (a) => new Promise((r) => a.close(r)));
  }
  const edge = {
    publish: (m) =>
      aedes ? new Promise((r) => aedes.publish({ cmd: 'publish', dup: false, ...m }, r)) : Promise.resolve(),
  };
  engine.start(edge);
  scope.add(engine, (e) => e.stop());
  const bridge = scope.add(
    new UpstreamBridge({
      config: config.upstream,
      node: config.node,
      outbox,
      logger,
      onDownstream: () => {},
    }),
    (b) => b.stop(),
  );
  bridge.start();
  const core = createCore({
    authorizer: authorizerFromConfig(config.auth, logger),
    engine: variant === 'nostore' ? undefined : engine,
    writeHealth,
    rateLimit: config.broker.rateLimit,
    aedes,
    batchMs,
  });
  await new Promise((r) => core.server.listen(0, '127.0.0.1', r));
  scope.add(core.server, (s) => new Promise((r) => s.close(r)));
  for (let i = 0; !bridge.connected; i++) {
    if (i > 200) throw new Error('the bridge did not connect upstream');
    await sleep(50);
  }
  return { sub, core, url: `mqtt://127.0.0.1:${core.server.address().port}` };
}

/** The upstream subscriber counts from now; `reached` once it has n messages (`nostore` forwards none). */
async function expectUpstream(sub, n, maxMs) {
  if (variant === 'nostore') return { reached: Promise.resolve({ unique: 0 }) };
  await sub.request({ cmd: 'expect', n, maxMs }, 'expecting', 5_000);
  return { reached: sub.next('reached', maxMs + 5_000) };
}

/** The edge bench's slow shape (bench/lib/edgeRuns.ts slowRun), timed here from inside the edge. */
async function slowClients(scope, url, sub) {
  const processes = 3;
  const per = Math.ceil(sensors / processes);
  const children = Array.from({ length: processes }, (_, i) =>
    scope.add(new BenchChild(`sensors-${i}`, lib('sensors.js')), (c) => c.stop(10_000)),
  );
  const counts = children.map((_, i) => Math.max(0, Math.min(per, sensors - i * per)));
  const at = { start: ticks() };
  await Promise.all(
    children.map((c, i) =>
      c.request(
        { cmd: 'connect', url, clients: counts[i], idPrefix: `s${i}-`, concurrency: 50 },
        'connected',
        120_000,
      ),
    ),
  );
  await sleep(1_000);
  at.connectedMemory = memory();
  at.connected = ticks();
  at.connectedSettled = settledMemory(); // the forced GC's CPU is in neither phase
  at.publishFrom = ticks();
  const n = sensors * seconds;
  const maxMs = seconds * 1000 + 60_000;
  const { reached } = await expectUpstream(sub, n, maxMs);
  const dones = await Promise.all(
    children.map((c) => c.request({ cmd: 'run', seconds, payloadBytes: 80 }, 'done', maxMs)),
  );
  at.reached = await reached;
  at.done = ticks();
  at.acked = dones.reduce((a, d) => a + d.acked, 0);
  at.errors = dones.reduce((a, d) => a + d.errors, 0);
  for (const c of children) await c.stop(10_000);
  return at;
}

/** mqttFloor.mjs's clients: connect 50 at a time, then SECONDS rounds of one QoS 1 message each, all at once. */
async function burstClients(scope, url, sub) {
  const n = sensors * seconds;
  const maxMs = 120_000;
  const { reached } = await expectUpstream(sub, n, maxMs);
  const floor = fileURLToPath(new URL('mqttFloor.mjs', import.meta.url));
  const child = fork(floor, [String(sensors), String(seconds), 'clients', url], { execArgv: [] });
  scope.add(child, (c) => c.kill());
  const at = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('burst clients: no end within 120 s')), maxMs);
    child.on('message', (m) => {
      at[m] = ticks();
      if (m === 'connected') at.connectedMemory = memory();
      if (m !== 'done') return;
      clearTimeout(timer);
      resolve();
    });
    child.on('exit', (code) => reject(new Error(`burst clients exited (${code})`)));
  });
  at.reached = await reached;
  at.done = ticks();
  at.acked = n;
  at.errors = 0;
  return at;
}

const scope = new Scope();
const deadline = setTimeout(() => {
  console.error('fastCore: no result within 300 s');
  process.exit(2);
}, 300_000);
try {
  const { sub, core, url } = await setUp(scope);
  const idleFrom = ticks();
  await sleep(1_000);
  const idleTicks = ticks() - idleFrom;
  const idle = memory();
  const idleSettled = settledMemory();
  const at = await (clientsKind === 'burst' ? burstClients : slowClients)(scope, url, sub);
  const peak = memory();
  const messages = sensors * seconds;
  const us = (a, b, per) => Math.round(((b - a) * 10_000) / per);
  console.log(
    JSON.stringify({
      edge: { aedes: 'fastCore+aedes', nostore: 'fastCore-nostore' }[variant] ?? 'fastCore',
      clients: clientsKind,
      batchMs,
      sensors,
      messages,
      acked: at.acked,
      errors: at.errors,
      unique: at.reached.unique,
      cpuS: (at.connected - at.start + at.done - (at.publishFrom ?? at.connected)) / 100,
      cpuPerConnectUs: us(at.start, at.connected, sensors),
      cpuPerMessageUs: us(at.publishFrom ?? at.connected, at.done, messages),
      idleCpuMsPerS: idleTicks * 10,
      acksPerWrite: Math.round((core.stats.acked / Math.max(1, core.stats.ackWrites)) * 100) / 100,
      rssIdleMB: idle.rssMB,
      rssConnectedMB: at.connectedMemory.rssMB,
      kBPerConnection: Math.round(((at.connectedMemory.rssMB - idle.rssMB) * 1024 * 10) / sensors) / 10,
      ...(at.connectedSettled && globalThis.gc
        ? {
            rssIdleAfterGcMB: idleSettled.rssMB,
            rssConnectedAfterGcMB: at.connectedSettled.rssMB,
            kBPerConnectionAfterGc:
              Math.round(((at.connectedSettled.rssMB - idleSettled.rssMB) * 1024 * 10) / sensors) / 10,
            // V8 heap + external after the GC: what RSS hides when freed pages are kept (no sockets' C++ side).
            jsKBPerConnection:
              Math.round(((at.connectedSettled.jsMB - idleSettled.jsMB) * 1024 * 10) / sensors) / 10,
          }
        : {}),
      peakRssMB: peak.hwmMB,
    }),
  );
} finally {
  clearTimeout(deadline);
  await scope.close();
}
process.exit(0);
