import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulatePlc } from '../../firmware-stubs/plc/cli.js';
import {
  type DiscoveryServer,
  type PlcStub,
  startDiscoveryServer,
  startPlcStub,
} from '../../firmware-stubs/plc/index.js';
import type { DiscoveredDevice } from '../../src/model/handler.js';
import { captureLogs } from '../helpers/logs.js';
import {
  DiscoveryProbe,
  type FakeServer,
  freePort,
  ids,
  startGarbageServer,
  startHangingServer,
} from '../helpers/opcuaFixtures.js';

// node-opcua is only loaded inside the handler and the stubs, so this runs before it is: every path
// node-opcua derives from the home directory (~/.config/node-opcua-default-nodejs) now points here.
const home = mkdtempSync(join(tmpdir(), 'leafbridge-opcua-home-'));
process.env.HOME = home;
delete process.env.XDG_CONFIG_HOME;

const ROOT = resolve(import.meta.dirname, '../..');
const SERIAL = { name: 'serialNumber', path: '/Objects/1:Plant/1:SerialNumber' };
const MODEL = { name: 'model', path: '/Objects/1:Plant/1:Model' };
const byUri = (devices: DiscoveredDevice[], uri: string) =>
  devices.find((d) => d.properties.OPCUA_APPLICATION_URI === uri);
const uris = (devices: DiscoveredDevice[]) => devices.map((d) => d.properties.OPCUA_APPLICATION_URI);

describe('OPC UA discovery against node-opcua servers on 127.0.0.1', () => {
  const logs = captureLogs();
  const logger = logs.logger;
  let lds: DiscoveryServer;
  let line1: PlcStub;
  let line2: PlcStub;
  let stopLine1: () => Promise<void>;
  const fakes: FakeServer[] = [];

  beforeAll(async () => {
    lds = await startDiscoveryServer({ logger });
    const [sim, secureOnly] = await Promise.all([
      simulatePlc(['--name', 'line1', '--lds', lds.endpointUrl], logger),
      startPlcStub({
        applicationName: 'line2',
        security: ['SignAndEncrypt'],
        identity: { serialNumber: 'SN-0002', model: 'LB-PLC-2' },
        discoveryServerEndpointUrl: lds.endpointUrl,
        logger,
      }),
    ]);
    line1 = sim.stubs[0]!;
    stopLine1 = sim.stop;
    line2 = secureOnly;
    expect(await line1.waitForRegistration(10_000)).toBe(true);
    expect(await line2.waitForRegistration(10_000)).toBe(true);
  }, 30_000);

  afterAll(async () => {
    await Promise.all([stopLine1?.(), line2?.stop(), ...fakes.map((f) => f.close())]);
    await lds?.stop();
    rmSync(home, { recursive: true, force: true });
  }, 20_000);

  it('finds a PLC stub by its URL, with its properties and browse-path values', async () => {
    const missing = { name: 'missing', path: '/Objects/1:Plant/1:NoSuchVariable' };
    const probe = new DiscoveryProbe(
      { discoveryUrls: [line1.endpointUrl], browsePaths: [SERIAL, MODEL, missing] },
      logger,
    );
    const { devices } = await probe.waitFor((d) => d.length > 0, 8_000);
    await probe.stop();
    expect(devices).toEqual([
      {
        id: `urn:leafbridge:plc:line1|${line1.endpointUrl}`,
        formerIds: ['urn:leafbridge:plc:line1'],
        properties: {
          OPCUA_DISCOVERY_URL: line1.endpointUrl,
          OPCUA_ENDPOINT_URL: line1.endpointUrl,
          OPCUA_APPLICATION_URI: 'urn:leafbridge:plc:line1',
          OPCUA_APPLICATION_NAME: 'line1',
          OPCUA_SECURITY_MODE: 'None',
          OPCUA_SECURITY_POLICY: 'None',
          OPCUA_SERIAL_NUMBER: 'SN-LINE1',
          OPCUA_MODEL: 'LB-PLC-1',
        },
        conditions: [
          {
            type: 'BrowsePathsRead',
            status: 'False',
            reason: 'BrowsePathNotRead',
            message: 'missing: BadNoMatch for /Objects/1:Plant/1:NoSuchVariable',
          },
        ],
      },
    ]);
  }, 15_000);

  it('finds the servers registered with a discovery server; one it cannot match carries a condition', async () => {
    const probe = new DiscoveryProbe({ discoveryUrls: [lds.endpointUrl] }, logger);
    const { devices } = await probe.waitFor((d) => d.length === 2, 8_000);
    await probe.stop();
    expect(uris(devices)).toEqual(['urn:leafbridge:plc:line1', 'urn:leafbridge:plc:line2']);
    const first = byUri(devices, 'urn:leafbridge:plc:line1');
    expect(first?.properties.OPCUA_DISCOVERY_URL).toBe(lds.endpointUrl);
    expect(first?.properties.OPCUA_ENDPOINT_URL).toBe(line1.endpointUrl);
    expect(first?.conditions).toBeUndefined();
    const secureOnly = byUri(devices, 'urn:leafbridge:plc:line2');
    expect(secureOnly?.properties.OPCUA_ENDPOINT_URL).toBeUndefined();
    expect(secureOnly?.conditions).toEqual([
      {
        type: 'EndpointSelected',
        status: 'False',
        reason: 'NoMatchingEndpoint',
        message: 'wanted None/None; the server offers SignAndEncrypt/Basic256Sha256',
      },
    ]);
  }, 15_000);

  it('lists at most maxDevices, the first by id, and logs the ones over the limit', async () => {
    const all = new DiscoveryProbe({ discoveryUrls: [lds.endpointUrl] }, logger);
    const both = (await all.waitFor((d) => d.length === 2, 8_000)).devices;
    await all.stop();
    const probe = new DiscoveryProbe({ discoveryUrls: [lds.endpointUrl], maxDevices: 1 }, logger);
    const { devices } = await probe.waitFor((d) => d.length > 0, 8_000);
    await probe.stop();
    const firstById = [...both].sort((a, b) => (a.id < b.id ? -1 : 1))[0];
    expect(devices.map((d) => d.id)).toEqual([firstById?.id]);
    expect(logs.lines().find((e) => e.msg === 'OPC UA devices over maxDevices dropped')).toMatchObject({
      found: 2,
      maxDevices: 1,
    });
  }, 20_000);

  it('filters by application name (include and exclude)', async () => {
    const include = new DiscoveryProbe(
      { discoveryUrls: [lds.endpointUrl], applicationNames: { action: 'include', items: ['line2'] } },
      logger,
    );
    const exclude = new DiscoveryProbe(
      { discoveryUrls: [lds.endpointUrl], applicationNames: { action: 'exclude', items: ['line2'] } },
      logger,
    );
    const [included, excluded] = await Promise.all([
      include.waitFor(() => true, 8_000),
      exclude.waitFor(() => true, 8_000),
    ]);
    await Promise.all([include.stop(), exclude.stop()]);
    expect(uris(included.devices)).toEqual(['urn:leafbridge:plc:line2']);
    expect(uris(excluded.devices)).toEqual(['urn:leafbridge:plc:line1']);
  }, 15_000);

  it('selects the SignAndEncrypt Basic256Sha256 endpoint of a trusted server and reads in a secure session', async () => {
    const pkiDir = mkdtempSync(join(tmpdir(), 'leafbridge-opcua-pki-'));
    const probe = new DiscoveryProbe(
      {
        discoveryUrls: [lds.endpointUrl],
        securityMode: 'SignAndEncrypt',
        securityPolicy: 'Basic256Sha256',
        trustedCertificates: [line2.certificatePem],
        browsePaths: [SERIAL],
        pkiDir,
      },
      logger,
    );
    const { devices } = await probe.waitFor((d) => d.length === 2, 10_000);
    await probe.stop();
    expect(byUri(devices, 'urn:leafbridge:plc:line2')).toEqual({
      id: `urn:leafbridge:plc:line2|${line2.endpointUrl}`,
      formerIds: ['urn:leafbridge:plc:line2'],
      properties: {
        OPCUA_DISCOVERY_URL: lds.endpointUrl,
        OPCUA_ENDPOINT_URL: line2.endpointUrl,
        OPCUA_APPLICATION_URI: 'urn:leafbridge:plc:line2',
        OPCUA_APPLICATION_NAME: 'line2',
        OPCUA_SECURITY_MODE: 'SignAndEncrypt',
        OPCUA_SECURITY_POLICY: 'Basic256Sha256',
        OPCUA_SERIAL_NUMBER: 'SN-0002',
      },
    });
    // line1 offers SignAndEncrypt too, but its certificate is in no trust list: listed, with the reason.
    const untrusted = byUri(devices, 'urn:leafbridge:plc:line1');
    expect(untrusted?.conditions?.[0]).toMatchObject({ type: 'ServerCertificateTrusted', status: 'False' });
    expect(untrusted?.properties.OPCUA_SERIAL_NUMBER).toBeUndefined();
    // The client certificate went to the PKI folder we gave, and stays there.
    expect(existsSync(join(pkiDir, 'own', 'certs', 'client_certificate.pem'))).toBe(true);
    rmSync(pkiDir, { recursive: true, force: true });
  }, 20_000);

  it('gives up on a server that never answers and drops one that answers garbage; the others are still found', async () => {
    const [hanging, garbage] = await Promise.all([startHangingServer(), startGarbageServer()]);
    fakes.push(hanging, garbage);
    const probe = new DiscoveryProbe(
      { discoveryUrls: [hanging.url, garbage.url, line1.endpointUrl], connectTimeoutMs: 1_000 },
      logger,
    );
    const first = await probe.waitFor(() => true, 5_000);
    await probe.stop();
    expect(uris(first.devices)).toEqual(['urn:leafbridge:plc:line1']);
    expect(first.at).toBeLessThan(3_000);
    const warnings = logs.lines().filter((e) => e.level === 40);
    expect(warnings).toContainEqual(expect.objectContaining({ url: hanging.url, code: 'OPCUA_TIMEOUT' }));
    expect(warnings).toContainEqual(
      expect.objectContaining({ url: garbage.url, msg: 'OPC UA FindServers failed' }),
    );
    // The reply that would have thrown out of node-opcua's socket listener (see guardedTransport.ts).
    expect(warnings).toContainEqual(
      expect.objectContaining({ url: garbage.url, msg: 'broken OPC UA reply, connection closed' }),
    );
  }, 15_000);

  it('lists a PLC soon after it starts, and drops it within 2 s of it stopping', async () => {
    const port = await freePort();
    const url = `opc.tcp://127.0.0.1:${port}`;
    // Polls every 500 ms, so it sees the start; the second one polls once a minute, so only the
    // connection watch can make it notice the stop in time.
    const polling = new DiscoveryProbe(
      { discoveryUrls: [url], pollIntervalMs: 500, browsePaths: [SERIAL] },
      logger,
    );
    await polling.waitFor((d) => d.length === 0, 5_000);
    const startAt = polling.now();
    // This one wants a user name and password: the anonymous session for browse paths is refused.
    const plc = await startPlcStub({
      applicationName: 'line3',
      port,
      user: { userName: 'op', password: 'pw' },
      logger,
    });
    const startedAt = polling.now();
    const listed = await polling.waitFor((d) => d.length === 1, 5_000);
    expect(listed.devices[0]?.conditions).toEqual([
      expect.objectContaining({ type: 'BrowsePathsRead', status: 'False', reason: 'SessionFailed' }),
    ]);
    const watching = new DiscoveryProbe({ discoveryUrls: [url], pollIntervalMs: 60_000 }, logger);
    await watching.waitFor((d) => d.length === 1, 5_000);
    const [seen, seenW] = [polling.seen(), watching.seen()];
    const stopAt = polling.now();
    const stopAtW = watching.now();
    await plc.stop();
    const [gone, goneW] = await Promise.all([
      polling.waitFor((d) => d.length === 0, 2_000, seen),
      watching.waitFor((d) => d.length === 0, 2_000, seenW),
    ]);
    await Promise.all([polling.stop(), watching.stop()]);
    const timing = {
      stubStartMs: startedAt - startAt,
      listedAfterStartMs: listed.at - startedAt,
      goneAfterStopMs: gone.at - stopAt,
      goneAfterStopWatchOnlyMs: goneW.at - stopAtW,
    };
    console.info(`opcua timing ${JSON.stringify(timing)}`);
    expect(goneW.at - stopAtW).toBeLessThan(2_000);
    expect(gone.at - stopAt).toBeLessThan(2_000);
  }, 20_000);

  it('keeps each server id whether or not another server shares its applicationUri', async () => {
    const shared = 'urn:vendor:plc-library-default';
    const [a, b] = await Promise.all(
      ['clone-a', 'clone-b'].map((name) =>
        startPlcStub({ applicationName: name, applicationUri: shared, logger }),
      ),
    );
    const probe = new DiscoveryProbe(
      { discoveryUrls: [a!.endpointUrl, b!.endpointUrl], pollIntervalMs: 500 },
      logger,
    );
    try {
      const both = await probe.waitFor((d) => d.length === 2, 8_000);
      const idOf = (devices: DiscoveredDevice[], url: string) =>
        devices.find((d) => d.properties.OPCUA_ENDPOINT_URL === url)?.id;
      const idA = idOf(both.devices, a!.endpointUrl);
      expect(idA).toBe(`${shared}|${a!.endpointUrl}`);
      expect(idOf(both.devices, b!.endpointUrl)).toBe(`${shared}|${b!.endpointUrl}`);
      const seen = probe.seen();
      await b!.stop();
      const alone = await probe.waitFor((d) => d.length === 1, 5_000, seen);
      expect(ids(alone.devices)).toEqual([idA]);
    } finally {
      await Promise.all([probe.stop(), a!.stop(), b!.stop().catch(() => {})]);
    }
  }, 25_000);

  it('a PLC stub says so (log, state, exit status) when a discovery server without encryption refuses it', async () => {
    const plain = await startDiscoveryServer({ securityModes: ['None'], logger });
    const stubLogs = captureLogs();
    const plc = await startPlcStub({
      applicationName: 'refused',
      discoveryServerEndpointUrl: plain.endpointUrl,
      logger: stubLogs.logger,
    });
    try {
      expect(await plc.waitForRegistration(10_000)).toBe(false);
      expect(plc.registration()).toEqual({
        state: 'failed',
        reason: expect.stringMatching(/does not list this server/),
      });
      expect(plain.registeredServers()).toEqual([]);
      const errors = stubLogs.lines().filter((e) => e.level === 50);
      expect(errors).toEqual([
        expect.objectContaining({
          msg: 'registration with the discovery server failed',
          discoveryServer: plain.endpointUrl,
        }),
      ]);
      // The command line: an error that names the reason, and exit status 1.
      await expect(
        simulatePlc(['--name', 'refused-cli', '--lds', plain.endpointUrl], logger),
      ).rejects.toThrow(
        /not registered with the discovery server .*refused-cli: the discovery server does not list/,
      );
      const cli = spawnSync(
        process.execPath,
        [
          join(ROOT, 'bin/leafbridge.js'),
          'simulate',
          'plc',
          '--name',
          'refused-bin',
          '--lds',
          plain.endpointUrl,
        ],
        { encoding: 'utf8', timeout: 30_000, env: { ...process.env, HOME: home } },
      );
      expect(cli.status, cli.stderr).toBe(1);
      expect(cli.stderr).toMatch(/not registered with the discovery server/);
    } finally {
      await plc.stop();
      await plain.stop();
    }
  }, 60_000);

  it('writes nothing under ~/.config (node-opcua default certificate folders)', () => {
    expect(homedir()).toBe(home);
    const config = join(home, '.config');
    const entries = existsSync(config) ? readdirSync(config) : [];
    expect(entries.filter((e) => e.includes('opcua') || e.includes('OPCUA'))).toEqual([]);
  });
});
