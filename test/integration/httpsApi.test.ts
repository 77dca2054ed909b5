import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Agent } from '../../src/agent.js';
import { newToken } from '../../src/api/tokenFile.js';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/util/logger.js';
import { agentConfig } from '../helpers/agentConfig.js';
import { until, within } from '../helpers/mqtt.js';
import { CLI, tempDir } from '../helpers/processes.js';
import { type CertFiles, makeCa, makeLeaf } from '../helpers/tlsCerts.js';

/** The HTTP API served over TLS (http.tls), with token checks, and its certificate replaced while it runs. */

interface Answer {
  status: number;
  /** The CN of the certificate the server presented. */
  cn: string;
}

function get(port: number, path: string, ca: string, token?: string): Promise<Answer> {
  const answer = new Promise<Answer>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        ca: readFileSync(ca),
        servername: 'localhost',
        agent: false, // a new handshake per request, so a replaced certificate is seen
        headers: token ? { authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        const cn = String((res.socket as TLSSocket).getPeerCertificate().subject.CN);
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, cn }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  return within(answer, 5000, `GET ${path}`);
}

describe('HTTP API over TLS', () => {
  const dir = tempDir('lb-https-');
  const served = { cert: join(dir.path, 'http.crt'), key: join(dir.path, 'http.key') };
  const reader = newToken('dashboard', 'read-only');
  let ca: CertFiles;
  let second: CertFiles;
  let agent: Agent;
  let port: number;

  beforeAll(async () => {
    ca = makeCa(dir.path, 'api-ca');
    const first = makeLeaf(dir.path, ca, 'first', { cn: 'api-one', usage: 'server' });
    second = makeLeaf(dir.path, ca, 'second', { cn: 'api-two', usage: 'server' });
    copyFileSync(first.cert, served.cert);
    copyFileSync(first.key, served.key);
    const tokensFile = join(dir.path, 'tokens.yaml');
    writeFileSync(tokensFile, stringify({ tokens: [reader.entry] }));
    const config = agentConfig(join(dir.path, 'data'), undefined, {
      http: { listen: '127.0.0.1:0', auth: { tokensFile }, tls: { ...served, reloadInterval: '200ms' } },
    });
    agent = new Agent(parseConfig(config), silentLogger());
    port = (await agent.start()).http.port;
  }, 30_000);

  afterAll(async () => {
    await agent?.stop();
    dir.remove();
  });

  it('serves HTTPS only, and checks tokens as over HTTP', async () => {
    expect(await get(port, '/healthz', ca.cert)).toEqual({ status: 200, cn: 'api-one' });
    expect((await get(port, '/api/v1/devices', ca.cert)).status).toBe(401);
    expect((await get(port, '/api/v1/devices', ca.cert, 'lbt_guessed')).status).toBe(401);
    expect((await get(port, '/api/v1/devices', ca.cert, reader.token)).status).toBe(200);
    // Plain HTTP to the same port gets no HTTP answer.
    const plain = new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/healthz' }, (res) =>
        resolve(`status ${res.statusCode}`),
      );
      req.on('error', (err) => resolve(err.message));
      req.end();
    });
    expect(await within(plain, 5000, 'plain HTTP')).not.toMatch(/^status 200/);
  });

  it('`leafbridge get` reads over HTTPS, trusting a private CA through NODE_EXTRA_CA_CERTS', async () => {
    const tokenFile = join(dir.path, 'token');
    writeFileSync(tokenFile, `${reader.token}\n`);
    const server = `https://127.0.0.1:${port}`;
    // Not spawnSync: the agent answering runs in this process.
    const run = (env: Record<string, string>) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [CLI, 'get', 'devices', '--server', server, '--token-file', tokenFile],
          { timeout: 15_000, env: { ...process.env, ...env } },
          (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        );
      });
    const trusted = await run({ NODE_EXTRA_CA_CERTS: ca.cert });
    expect(trusted.code, trusted.stderr).toBe(0);
    expect(trusted.stderr).toMatch(/No resources found/); // the agent answered: it has no devices
    const untrusted = await run({});
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/cannot reach the agent/);
  });

  it('a replaced certificate is served to new connections without a restart', async () => {
    copyFileSync(second.key, served.key);
    copyFileSync(second.cert, served.cert);
    await until(async () => (await get(port, '/healthz', ca.cert)).cn === 'api-two', 5000, 'api-two served');
    expect(await get(port, '/api/v1/devices', ca.cert, reader.token)).toEqual({ status: 200, cn: 'api-two' });
  });
});
