import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/util/errors.js';
import { CLI, tempDir } from '../../helpers/processes.js';

const minimal = { node: 'edge-1', dataDir: '/tmp/lb' };

function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('config', () => {
  const dirs: { remove(): void }[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) d.remove();
  });

  it('fills defaults and normalises sizes, durations and addresses', () => {
    const c = parseConfig({ ...minimal, upstream: { url: 'mqtts://cloud.example:8883' } });
    expect(c.broker.listen).toEqual({ host: '0.0.0.0', port: 1883 });
    // Loopback unless told: the API holds device data (docs/security.md); the install sets 0.0.0.0.
    expect(c.http.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.outbox).toEqual({ maxBytes: 1024 ** 3, overflow: 'drop-oldest' });
    expect(c.upstream?.prefix).toBe('leafbridge');
    expect(c.upstream?.clientId).toBe('leafbridge-edge-1');
    expect(c.upstream?.keepaliveSeconds).toBe(30);
    expect(c.upstream?.reconnect).toEqual({ minDelayMs: 500, maxDelayMs: 30_000 });
    expect(c.commands.ttlMs).toBe(3_600_000);
    expect(c.auth.allowAnonymous).toBe(false);
  });

  it('has the defaults the docs promise: grace period, probe paths, slot release, refusal logs, durability', () => {
    const c = parseConfig(minimal);
    expect(c.discovery).toMatchObject({
      gracePeriodMs: 5 * 60_000,
      probeWritePaths: ['/dev/ttyUSB', '/dev/ttyACM'],
    });
    // No registration socket for external handlers unless the config names some.
    expect(c.discovery.external.handlers).toEqual([]);
    expect(c.devicePlugins).toMatchObject({ releaseIntervalMs: 30_000, releaseGraceMs: 2 * 60_000 });
    expect(c.broker.refusalLogIntervalMs).toBe(60_000);
    expect(c.store.synchronous).toBe('normal');
  });

  it('reports every error at once, each by its path', () => {
    const found = problems({
      node: 'Edge_1',
      dataDir: '/tmp/lb',
      broker: { listen: 'nowhere', lisen: 'typo' },
      upstream: { url: 'http://cloud' },
      outbox: { maxBytes: 'lots', overflow: 'drop-newest' },
    });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^node: must be a lowercase DNS name/),
        expect.stringMatching(/^broker\.listen: must be host:port/),
        'broker.lisen: unknown key',
        'upstream.url: must be an mqtt:// or mqtts:// URL',
        expect.stringMatching(/^outbox\.maxBytes: must be a size/),
        'outbox.overflow: must be drop-oldest or reject-new',
      ]),
    );
    expect(found).toHaveLength(6);
  });

  it('names missing required keys and bad list entries with their index', () => {
    const found = problems({ auth: { devices: [{ id: 'ok-1', passwordHash: 'plain' }, { id: 'a/b' }] } });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^node: /),
        expect.stringMatching(/^dataDir: /),
        expect.stringMatching(/^auth\.devices\[0\]\.passwordHash: must be a hash/),
        expect.stringMatching(/^auth\.devices\[1\]\.id: /),
        expect.stringMatching(/^auth\.devices\[1\]\.passwordHash: /),
      ]),
    );
  });

  it('checks files and cross-field rules after the schema', () => {
    const found = problems({
      ...minimal,
      broker: { listen: '127.0.0.1:70000' },
      upstream: { url: 'mqtts://c:8883', tls: { ca: '/nonexistent/ca.pem', cert: '/nonexistent/c.pem' } },
    });
    expect(found).toEqual(
      expect.arrayContaining([
        'broker.listen: port out of range',
        expect.stringMatching(/^upstream\.tls\.ca: cannot read \/nonexistent\/ca\.pem/),
        'upstream.tls: cert and key go together',
      ]),
    );
  });

  it('TLS and WebSocket listeners: paths from the config file, wss only with broker.tls', () => {
    expect(problems({ ...minimal, broker: { websocket: { tls: true } } })).toEqual([
      'broker.websocket.tls: needs broker.tls (its certificate and key)',
    ]);
    expect(problems({ ...minimal, broker: { tls: { cert: 'c.pem' } } })).toEqual([
      expect.stringMatching(/^broker\.tls\.key: /),
    ]);
    const config = parseConfig(
      {
        ...minimal,
        broker: { tls: { cert: 'c.pem', key: 'k.pem', clientCa: 'ca.pem' }, websocket: {} },
        http: { tls: { cert: '/etc/x/h.pem', key: 'h.key', reloadInterval: '1m' } },
        auth: { credentialsFile: 'creds.yaml' },
      },
      '/etc/lb',
    );
    expect(config.broker.tls).toEqual({
      listen: { host: '0.0.0.0', port: 8883 },
      cert: '/etc/lb/c.pem',
      key: '/etc/lb/k.pem',
      clientCa: '/etc/lb/ca.pem',
      clientCertificates: 'required',
      identityFrom: 'cn',
      reloadIntervalMs: 10_000,
    });
    expect(config.broker.websocket).toEqual({
      listen: { host: '0.0.0.0', port: 8083 },
      path: '/mqtt',
      tls: false,
    });
    expect(config.http.tls).toEqual({ cert: '/etc/x/h.pem', key: '/etc/lb/h.key', reloadIntervalMs: 60_000 });
    expect(config.auth.credentialsFile).toBe('/etc/lb/creds.yaml');
  });

  it('reads YAML files and reports YAML syntax errors with the file name', () => {
    const dir = tempDir();
    dirs.push(dir);
    const good = join(dir.path, 'good.yaml');
    writeFileSync(
      good,
      'node: edge-1\ndataDir: data\nupstream: {url: "mqtt://127.0.0.1:1883", passwordFile: pw}\n',
    );
    writeFileSync(join(dir.path, 'pw'), 's3cret\n');
    const c = loadConfigFile(good);
    expect(c.dataDir).toBe(join(dir.path, 'data'));
    expect(c.upstream?.password).toBe('s3cret');
    const bad = join(dir.path, 'bad.yaml');
    writeFileSync(bad, 'node: [unclosed\n');
    expect(() => loadConfigFile(bad)).toThrow(/bad\.yaml/);
  });

  it('the agent exits 2 on a bad config before opening any port', () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir.path, 'agent.yaml');
    writeFileSync(
      file,
      `node: edge-1\ndataDir: ${dir.path}\nbroker: {listen: "127.0.0.1:0"}\nupstream: {url: "ftp://x"}\n`,
    );
    const run = spawnSync(process.execPath, [CLI, 'agent', '--config', file], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('upstream.url: must be an mqtt:// or mqtts:// URL');
    expect(run.stdout).not.toContain('agent started');
  });

  it('the agent exits 2 when a TLS or credentials file it names is missing or bad', () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir.path, 'agent.yaml');
    const base = `node: edge-1\ndataDir: ${dir.path}\nbroker: {listen: "127.0.0.1:0"`;
    writeFileSync(join(dir.path, 'not-a-cert.pem'), 'not PEM\n');
    writeFileSync(join(dir.path, 'creds.yaml'), 'devices: [{id: d1, passwordHash: plain}]\n');
    for (const [config, expected] of [
      [
        `${base}, tls: {listen: "127.0.0.1:0", cert: missing.pem, key: missing.key}}\n`,
        /broker\.tls: ENOENT/,
      ],
      [`${base}}\nhttp: {tls: {cert: not-a-cert.pem, key: not-a-cert.pem}}\n`, /http\.tls: the certificate/],
      [`${base}}\nauth: {credentialsFile: creds.yaml}\n`, /creds\.yaml: \/devices\/0\/passwordHash/],
    ] as const) {
      writeFileSync(file, config);
      const run = spawnSync(process.execPath, [CLI, 'agent', '--config', file], {
        encoding: 'utf8',
        timeout: 10_000,
      });
      expect(run.status, config).toBe(2);
      expect(run.stderr).toMatch(expected);
      expect(run.stdout).not.toContain('agent started');
    }
  });
});
