import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Agent } from '../../src/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/util/logger.js';
import { hashPassword } from '../../src/util/password.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { killClients, mosquittoPub } from '../helpers/mosquitto.js';
import { collect, connect, metric, type Received, until, within } from '../helpers/mqtt.js';
import { tempDir } from '../helpers/processes.js';
import { type CertFiles, makeCa, makeLeaf } from '../helpers/tlsCerts.js';

/**
 * The edge broker's mqtts listener with client certificates from a CA made here, beside the plain listener
 * (anonymous clients allowed there, so a subscriber can watch every device), with the server certificate
 * and the credentials file replaced while clients stay connected, and MQTT over WebSocket.
 */

interface Pki {
  ca: CertFiles;
  server1: CertFiles;
  server2: CertFiles;
  device: CertFiles;
  stranger: CertFiles;
}

function makePki(dir: string): Pki {
  const ca = makeCa(dir, 'edge-ca');
  const other = makeCa(dir, 'other-ca');
  return {
    ca,
    server1: makeLeaf(dir, ca, 'server1', { cn: 'edge-one', usage: 'server' }),
    server2: makeLeaf(dir, ca, 'server2', { cn: 'edge-two', usage: 'server' }),
    device: makeLeaf(dir, ca, 'dev7', { cn: 'dev-7', usage: 'client' }),
    // The same name, from a CA the broker does not trust.
    stranger: makeLeaf(dir, other, 'stranger', { cn: 'dev-7', usage: 'client' }),
  };
}

/** The CN of the certificate a TLS server at `port` presents now. */
function serverCn(port: number, ca: string): Promise<string> {
  return within(
    new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca), servername: 'localhost' });
      socket.once('secureConnect', () => {
        resolve(String(socket.getPeerCertificate().subject.CN));
        socket.destroy();
      });
      socket.once('error', reject);
    }),
    5000,
    'a TLS handshake',
  );
}

/** Resolves true once the broker answers a QoS 1 PUBLISH with success, false when it refuses it. */
async function published(client: MqttClient, topic: string, payload: string): Promise<boolean> {
  try {
    const packet = await within(client.publishAsync(topic, payload, { qos: 1 }), 5000, `PUBLISH ${topic}`);
    return ((packet as { reasonCode?: number } | undefined)?.reasonCode ?? 0) < 0x80;
  } catch {
    return false;
  }
}

/** How a client sees a connection the TLS layer closed: a close or a broken pipe, never a CONNACK refusal. */
const CLOSED_BY_TLS = /^(closed before CONNACK|write EPIPE|read ECONNRESET|socket hang up)$/;

const CONNECT_REFUSALS = 'leafbridge_broker_refused_total{reason="connect"}';

const payloads = (messages: Received[], topic: string) =>
  messages.filter((m) => m.topic === topic).map((m) => m.payload.toString());

describe('edge broker: mqtts with client certificates, reload, WebSocket', () => {
  const dir = tempDir('lb-mqtts-');
  const served = { cert: join(dir.path, 'served.crt'), key: join(dir.path, 'served.key') };
  const servedCa = join(dir.path, 'client-ca.crt');
  const credentialsFile = join(dir.path, 'credentials.yaml');
  let pki: Pki;
  let agent: Agent;
  let plainUrl: string;
  let tlsPort: number;
  let wsUrl: string;
  let watcher: { client: MqttClient; messages: Received[] };
  const clients: MqttClient[] = [];

  const tlsClient = (o: IClientOptions, files: CertFiles | null = pki.device) =>
    connect(`mqtts://127.0.0.1:${tlsPort}`, {
      ca: readFileSync(pki.ca.cert),
      servername: 'localhost',
      ...(files ? { cert: readFileSync(files.cert), key: readFileSync(files.key) } : {}),
      ...o,
    }).then((c) => {
      clients.push(c);
      return c;
    });

  /** How a CONNECT over mqtts fails: the error, or the close without one. Throws if it is accepted. */
  const refused = (o: IClientOptions, files: CertFiles | null = pki.device): Promise<string> => {
    const client = mqtt.connect(`mqtts://127.0.0.1:${tlsPort}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ca: readFileSync(pki.ca.cert),
      servername: 'localhost',
      ...(files ? { cert: readFileSync(files.cert), key: readFileSync(files.key) } : {}),
      ...o,
    });
    const outcome = new Promise<string>((resolve, reject) => {
      client.once('connect', () => reject(new Error(`${o.clientId} was accepted`)));
      client.once('error', (err) => resolve(err.message));
      client.once('close', () => resolve('closed before CONNACK'));
    });
    return within(outcome, 10_000, `${o.clientId} refused`).finally(() => client.end(true));
  };

  beforeAll(async () => {
    pki = makePki(dir.path);
    copyFileSync(pki.server1.cert, served.cert);
    copyFileSync(pki.server1.key, served.key);
    copyFileSync(pki.ca.cert, servedCa);
    writeFileSync(credentialsFile, stringify({ devices: [] }));
    const config = agentConfig(join(dir.path, 'data'), undefined, {
      broker: {
        listen: '127.0.0.1:0',
        tls: { listen: '127.0.0.1:0', ...served, clientCa: servedCa, reloadInterval: '200ms' },
        websocket: { listen: '127.0.0.1:0' },
      },
      auth: { allowAnonymous: true, credentialsFile },
    });
    agent = new Agent(parseConfig(config), silentLogger());
    const addresses = await agent.start();
    plainUrl = `mqtt://127.0.0.1:${addresses.broker.port}`;
    tlsPort = addresses.brokerTls?.port ?? 0;
    wsUrl = `ws://127.0.0.1:${addresses.brokerWebsocket?.port}/mqtt`;
    watcher = await collect(plainUrl, 'devices/#', { clientId: 'watcher' });
  }, 30_000);

  afterAll(async () => {
    await killClients();
    for (const c of [...clients, watcher?.client]) c?.end(true);
    await agent?.stop();
    dir.remove();
  });

  it('a device certificate from the CA: accepted, its CN is the device id, the device ACL applies', async () => {
    const device = await tlsClient({ clientId: 'tls-dev7' });
    expect(await published(device, 'devices/dev-7/telemetry/t', 'from-cert')).toBe(true);
    expect(await published(device, 'devices/dev-8/telemetry/t', 'not-mine')).toBe(false);
    await expect(
      within(device.subscribeAsync('devices/dev-8/#', { qos: 1 }), 5000, 'SUBACK'),
    ).rejects.toThrow(/Not authorized/);
    await until(
      () => payloads(watcher.messages, 'devices/dev-7/telemetry/t').includes('from-cert'),
      5000,
      'it',
    );
    expect(payloads(watcher.messages, 'devices/dev-8/telemetry/t')).toEqual([]);
    // A username in CONNECT other than the certificate's name is refused; the certificate's own is fine.
    expect(await refused({ clientId: 'tls-liar', username: 'dev-8', password: 'x' })).toMatch(
      /Bad User Name or Password/,
    );
    const named = await tlsClient({ clientId: 'tls-named', username: 'dev-7' });
    expect(await published(named, 'devices/dev-7/telemetry/t', 'named')).toBe(true);
  });

  it('a certificate from another CA, or none, is refused at the handshake; the plain listener is unaffected', async () => {
    // The TLS layer closes the connection before a byte of MQTT is read: no CONNACK, refused or not.
    expect(await refused({ clientId: 'tls-stranger' }, pki.stranger)).toMatch(CLOSED_BY_TLS);
    expect(await refused({ clientId: 'tls-nocert' }, null)).toMatch(/certificate required/);
    const plain = await connect(plainUrl, { clientId: 'plain-dev' });
    clients.push(plain);
    expect(await published(plain, 'devices/plain-1/telemetry/t', 'plain')).toBe(true);
    await until(() => payloads(watcher.messages, 'devices/plain-1/telemetry/t').length === 1, 5000, 'plain');
    expect(payloads(watcher.messages, 'devices/dev-7/telemetry/t')).not.toContain('stranger');
  });

  it("mosquitto_pub over mqtts: with the device certificate published, with the other CA's refused", async () => {
    const tlsArgs = (files: CertFiles) => ['--cafile', pki.ca.cert, '--cert', files.cert, '--key', files.key];
    const ok = await mosquittoPub({ port: tlsPort, clientId: 'mosq-dev7' }, [
      ...tlsArgs(pki.device),
      '-q',
      '1',
      '-t',
      'devices/dev-7/telemetry/mosq',
      '-m',
      'mosquitto-ok',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    const refused = await mosquittoPub({ port: tlsPort, clientId: 'mosq-stranger' }, [
      ...tlsArgs(pki.stranger),
      '-q',
      '1',
      '-t',
      'devices/dev-7/telemetry/mosq',
      '-m',
      'mosquitto-stranger',
    ]);
    expect(refused.code).not.toBe(0);
    await until(
      () => payloads(watcher.messages, 'devices/dev-7/telemetry/mosq').includes('mosquitto-ok'),
      5000,
      'the mosquitto_pub message',
    );
    expect(payloads(watcher.messages, 'devices/dev-7/telemetry/mosq')).toEqual(['mosquitto-ok']);
  });

  it('a replaced server certificate is served to new clients; a connected client stays connected', async () => {
    const before = await tlsClient({ clientId: 'tls-stays' });
    let closes = 0;
    before.on('close', () => closes++);
    expect(String((before.stream as TLSSocket).getPeerCertificate().subject.CN)).toBe('edge-one');
    // The key first: for a moment the key does not fit the certificate, and the old pair must stay served.
    copyFileSync(pki.server2.key, served.key);
    copyFileSync(pki.server2.cert, served.cert);
    let cn = '';
    await until(
      async () => {
        cn = await serverCn(tlsPort, pki.ca.cert);
        return cn === 'edge-two';
      },
      5000,
      'the new certificate served',
    );
    const after = await tlsClient({ clientId: 'tls-after' });
    expect(String((after.stream as TLSSocket).getPeerCertificate().subject.CN)).toBe('edge-two');
    expect(before.connected).toBe(true);
    expect(await published(before, 'devices/dev-7/telemetry/t', 'still-here')).toBe(true);
    await until(
      () => payloads(watcher.messages, 'devices/dev-7/telemetry/t').includes('still-here'),
      5000,
      'it',
    );
    expect(closes).toBe(0);
  });

  it('a device added to the credentials file logs in without a restart; connected clients stay', async () => {
    const stays = await tlsClient({ clientId: 'tls-during-reload' });
    const login = () =>
      connect(plainUrl, { clientId: 'pw-dev9', username: 'dev-9', password: 'dev-9-secret' });
    await expect(login()).rejects.toThrow();
    writeFileSync(
      credentialsFile,
      stringify({ devices: [{ id: 'dev-9', passwordHash: await hashPassword('dev-9-secret') }] }),
    );
    let device: MqttClient | undefined;
    await until(
      async () => {
        device = await login().catch(() => undefined);
        return device !== undefined;
      },
      5000,
      'the password from the file accepted',
    );
    clients.push(device as MqttClient);
    expect(await published(device as MqttClient, 'devices/dev-9/telemetry/t', 'pw')).toBe(true);
    expect(await published(device as MqttClient, 'devices/dev-7/telemetry/t', 'pw-not-mine')).toBe(false);
    // Removed again: refused at the next CONNECT; who is connected stays connected.
    writeFileSync(credentialsFile, stringify({ devices: [] }));
    await until(
      async () => (await login().catch(() => undefined)) === undefined,
      5000,
      'dev-9 refused again',
    );
    expect(stays.connected).toBe(true);
    expect(await published(stays, 'devices/dev-7/telemetry/t', 'after-file')).toBe(true);
  });

  it('a CA added to the client CA file: its certificates are accepted on new handshakes', async () => {
    const stays = await tlsClient({ clientId: 'tls-during-ca' });
    expect(await refused({ clientId: 'tls-stranger-2' }, pki.stranger)).toMatch(CLOSED_BY_TLS);
    const otherCa = readFileSync(join(dir.path, 'other-ca.crt'), 'utf8');
    writeFileSync(servedCa, `${readFileSync(pki.ca.cert, 'utf8')}${otherCa}`);
    let stranger: MqttClient | undefined;
    await until(
      async () => {
        // A refused attempt closes without an error: bounded here.
        stranger = await within(
          tlsClient({ clientId: 'tls-stranger-3' }, pki.stranger),
          2000,
          'CONNACK',
        ).catch(() => undefined);
        return stranger !== undefined;
      },
      5000,
      'the other CA trusted',
    );
    expect(await published(stranger as MqttClient, 'devices/dev-7/telemetry/t', 'other-ca')).toBe(true);
    expect(stays.connected).toBe(true);
  });

  it('MQTT over WebSocket: publish and subscribe through the broker with mqtt.js', async () => {
    const sub = await collect(wsUrl, 'devices/ws-1/#', { clientId: 'ws-sub' });
    clients.push(sub.client);
    const pub = await connect(wsUrl, { clientId: 'ws-pub', protocolVersion: 4 });
    clients.push(pub);
    expect(await published(pub, 'devices/ws-1/telemetry/t', 'over-ws')).toBe(true);
    await until(
      () => payloads(sub.messages, 'devices/ws-1/telemetry/t').includes('over-ws'),
      5000,
      'ws message',
    );
    await until(
      () => payloads(watcher.messages, 'devices/ws-1/telemetry/t').includes('over-ws'),
      5000,
      'plain',
    );
  });
});

describe('edge broker: optional client certificates, names from a SAN, wss', () => {
  const dir = tempDir('lb-wss-');
  let ca: CertFiles;
  let device: CertFiles;
  let stranger: CertFiles;
  let agent: Agent;
  let tlsPort: number;
  let wssUrl: string;
  let httpBase: string;
  let watcher: { client: MqttClient; messages: Received[] };
  const clients: MqttClient[] = [];

  const open = (url: string, o: IClientOptions, files: CertFiles | null) =>
    connect(url, {
      ca: readFileSync(ca.cert),
      servername: 'localhost',
      ...(files ? { cert: readFileSync(files.cert), key: readFileSync(files.key) } : {}),
      ...o,
    }).then((c) => {
      clients.push(c);
      return c;
    });

  beforeAll(async () => {
    ca = makeCa(dir.path, 'edge-ca');
    const other = makeCa(dir.path, 'other-ca');
    const server = makeLeaf(dir.path, ca, 'server', { cn: 'edge', usage: 'server' });
    device = makeLeaf(dir.path, ca, 'dev11', { cn: 'not-the-id', usage: 'client', sans: ['DNS:dev-11'] });
    stranger = makeLeaf(dir.path, other, 'stranger', { cn: 'x', usage: 'client', sans: ['DNS:dev-11'] });
    const hash = await hashPassword('pw');
    const config = agentConfig(join(dir.path, 'data'), undefined, {
      broker: {
        listen: '127.0.0.1:0',
        tls: {
          listen: '127.0.0.1:0',
          ...server,
          clientCa: ca.cert,
          clientCertificates: 'optional',
          identityFrom: 'san-dns',
        },
        websocket: { listen: '127.0.0.1:0', tls: true },
      },
      auth: {
        allowAnonymous: false,
        devices: [{ id: 'dev-12', passwordHash: hash }],
        users: [{ username: 'watcher', passwordHash: hash, subscribe: ['devices/#'] }],
      },
    });
    agent = new Agent(parseConfig(config), silentLogger());
    const addresses = await agent.start();
    tlsPort = addresses.brokerTls?.port ?? 0;
    wssUrl = `wss://127.0.0.1:${addresses.brokerWebsocket?.port}/mqtt`;
    httpBase = `http://127.0.0.1:${addresses.http.port}`;
    watcher = await collect(`mqtt://127.0.0.1:${addresses.broker.port}`, 'devices/#', {
      clientId: 'watcher',
      username: 'watcher',
      password: 'pw',
    });
  }, 30_000);

  afterAll(async () => {
    for (const c of [...clients, watcher?.client]) c?.end(true);
    await agent?.stop();
    dir.remove();
  });

  it('wss with a device certificate: named by its DNS SAN, not its CN, under the device ACL', async () => {
    const client = await open(wssUrl, { clientId: 'wss-dev11' }, device);
    expect(await published(client, 'devices/dev-11/telemetry/t', 'over-wss')).toBe(true);
    expect(await published(client, 'devices/not-the-id/telemetry/t', 'by-cn')).toBe(false);
    await until(
      () => payloads(watcher.messages, 'devices/dev-11/telemetry/t').includes('over-wss'),
      5000,
      'it',
    );
    expect(payloads(watcher.messages, 'devices/not-the-id/telemetry/t')).toEqual([]);
  });

  it("optional certificates: none, then a password is asked for; another CA's is refused on mqtts and wss", async () => {
    const url = `mqtts://127.0.0.1:${tlsPort}`;
    const withPassword = await open(url, { clientId: 'pw-12', username: 'dev-12', password: 'pw' }, null);
    expect(await published(withPassword, 'devices/dev-12/telemetry/t', 'pw-over-tls')).toBe(true);
    await expect(open(url, { clientId: 'nobody' }, null)).rejects.toThrow(/Not authorized|Bad User/);
    await expect(
      open(url, { clientId: 'pw-wrong', username: 'dev-12', password: 'no' }, null),
    ).rejects.toThrow();
    const refusedBefore = await metric(httpBase, CONNECT_REFUSALS);
    for (const target of [url, wssUrl]) {
      const client = mqtt.connect(target, {
        clientId: 'stranger',
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ca: readFileSync(ca.cert),
        cert: readFileSync(stranger.cert),
        key: readFileSync(stranger.key),
        servername: 'localhost',
      });
      const outcome = new Promise<string>((resolve) => {
        client.once('connect', () => resolve('accepted'));
        client.once('error', (err) => resolve(err.message));
        client.once('close', () => resolve('closed before CONNACK'));
      });
      // Closed by the TLS layer, not refused by a CONNACK (which a client without a certificate would get).
      expect(await within(outcome, 10_000, `stranger on ${target}`)).toMatch(CLOSED_BY_TLS);
      client.end(true);
    }
    // Counted as refused CONNECTs (and logged as refusals are), once per connection.
    expect(await metric(httpBase, CONNECT_REFUSALS)).toBe(refusedBefore + 2);
    await until(() => payloads(watcher.messages, 'devices/dev-12/telemetry/t').length === 1, 5000, 'dev-12');
    expect(payloads(watcher.messages, 'devices/dev-11/telemetry/t')).not.toContain('stranger');
  });
});
