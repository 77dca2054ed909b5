import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { newToken } from '../../src/api/tokenFile.js';
import { getCommand } from '../../src/cli/getCommand.js';
import { parseConfig } from '../../src/config/load.js';
import { type AgentProcess, CLI, startAgent, stopProcess, tempDir } from '../helpers/processes.js';
import { captureOutput, until, within } from '../helpers/wait.js';

/**
 * Who may use the standalone agent's HTTP API: the real agent process with a tokens file holding a
 * read-only and a read-write token. Every refused request must change nothing.
 */

const ECHO = {
  name: 'echo',
  spec: { handler: { name: 'debug-echo', details: { devices: [{ id: 'e-1' }] } } },
};
const NEW_CONFIG = {
  name: 'added',
  spec: { handler: { name: 'debug-echo', details: { devices: [{ id: 'a-1' }] } } },
};

const reader = newToken('dashboard', 'read-only');
const writer = newToken('ops', 'read-write');

async function call(
  base: string,
  method: string,
  path: string,
  o: { token?: string; authorization?: string; body?: unknown } = {},
): Promise<{ status: number; body: { reason?: string; message?: string; items?: unknown[] } }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.authorization) headers.authorization = o.authorization;
  const res = await within(
    fetch(`${base}${path}`, {
      method,
      headers,
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    }),
    10_000,
    `${method} ${path}`,
  );
  const text = await res.text();
  let body = {};
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, body };
}

describe('standalone: bearer tokens from a file, read-only and read-write', () => {
  const dir = tempDir('lb-httpauth-');
  const tokensFile = join(dir.path, 'tokens.yaml');
  let agent: AgentProcess;
  let base: string;

  const writeTokens = (entries: unknown[]) => writeFileSync(tokensFile, stringify({ tokens: entries }));

  beforeAll(async () => {
    writeTokens([reader.entry, writer.entry]);
    agent = await startAgent(dir.path, {
      node: 'edge-1',
      dataDir: join(dir.path, 'data'),
      broker: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0', auth: { tokensFile } },
      devicePlugins: { dir: join(dir.path, 'no-kubelet') },
      kubernetes: 'off',
      discoveryConfigs: [ECHO],
    });
    base = `http://127.0.0.1:${agent.http.port}`;
    await until(
      async () =>
        (await call(base, 'GET', '/api/v1/devices', { token: reader.token })).body.items?.length === 1,
      10_000,
      'the echo device',
    );
  }, 30_000);

  afterAll(async () => {
    if (agent) await stopProcess(agent.child);
    dir.remove();
  });

  const configNames = async () =>
    (await call(base, 'GET', '/api/v1/discoveryconfigs', { token: writer.token })).body.items?.map(
      (c) => (c as { metadata: { name: string } }).metadata.name,
    );

  it('without a token: liveness, readiness and the page answer; data, metrics and writes are 401', async () => {
    expect((await call(base, 'GET', '/healthz')).status).toBe(200);
    expect((await call(base, 'GET', '/readyz')).status).toBe(200);
    expect((await call(base, 'GET', '/dashboard/')).status).toBe(200);
    for (const path of [
      '/api/v1/devices',
      '/api/v1/devices/echo-x',
      '/api/v1/discoveryconfigs',
      '/api/v1/events',
      '/api/v1/twins/e-1',
      '/metrics',
      '/no-such-path',
    ]) {
      const answer = await call(base, 'GET', path);
      expect(answer.status, path).toBe(401);
      expect(answer.body.reason, path).toBe('Unauthorized');
    }
    const post = await call(base, 'POST', '/api/v1/discoveryconfigs', { body: NEW_CONFIG });
    expect(post.status).toBe(401);
    expect((await call(base, 'DELETE', '/api/v1/discoveryconfigs/echo')).status).toBe(401);
    expect(await configNames()).toEqual(['echo']);
  });

  it('a token it does not know, or credentials that are not a bearer token: 401', async () => {
    expect((await call(base, 'GET', '/api/v1/devices', { token: 'lbt_guessed' })).status).toBe(401);
    const basic = `Basic ${Buffer.from(`ops:${writer.token}`).toString('base64')}`;
    expect((await call(base, 'GET', '/api/v1/devices', { authorization: basic })).status).toBe(401);
    expect(
      (await call(base, 'POST', '/api/v1/discoveryconfigs', { token: 'lbt_guessed', body: NEW_CONFIG }))
        .status,
    ).toBe(401);
    expect(await configNames()).toEqual(['echo']);
  });

  it('the read-only token reads everything and is refused every write (403), which changes nothing', async () => {
    expect((await call(base, 'GET', '/api/v1/devices', { token: reader.token })).status).toBe(200);
    expect((await call(base, 'GET', '/api/v1/discoveryconfigs/echo', { token: reader.token })).status).toBe(
      200,
    );
    expect((await call(base, 'GET', '/metrics', { token: reader.token })).status).toBe(200);
    const post = await call(base, 'POST', '/api/v1/discoveryconfigs', {
      token: reader.token,
      body: NEW_CONFIG,
    });
    expect(post.status).toBe(403);
    expect(post.body.message).toContain('dashboard');
    const put = await call(base, 'PUT', '/api/v1/discoveryconfigs/echo', {
      token: reader.token,
      body: { ...ECHO, spec: { ...ECHO.spec, capacity: 5 } },
    });
    expect(put.status).toBe(403);
    expect(
      (await call(base, 'DELETE', '/api/v1/discoveryconfigs/echo', { token: reader.token })).status,
    ).toBe(403);
    expect(await configNames()).toEqual(['echo']);
    const echo = await call(base, 'GET', '/api/v1/discoveryconfigs/echo', { token: reader.token });
    expect((echo.body as { spec?: { capacity?: number } }).spec?.capacity).toBe(1);
  });

  it('the read-write token creates and deletes', async () => {
    const post = await call(base, 'POST', '/api/v1/discoveryconfigs', {
      token: writer.token,
      body: NEW_CONFIG,
    });
    expect(post.status).toBe(201);
    expect(await configNames()).toEqual(['added', 'echo']);
    expect(
      (await call(base, 'DELETE', '/api/v1/discoveryconfigs/added', { token: writer.token })).status,
    ).toBe(200);
    expect(await configNames()).toEqual(['echo']);
  });

  it('`leafbridge get` sends the token from $LEAFBRIDGE_TOKEN or --token-file, and says when it is refused', async () => {
    const refused = await captureOutput(() => getCommand(['devices', '--server', base]), 10_000, 'get');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('Error from server (Unauthorized)');
    const file = join(dir.path, 'reader.token');
    writeFileSync(file, `${reader.token}\n`);
    const listed = await captureOutput(
      () => getCommand(['devices', '--server', base, '--token-file', file]),
      10_000,
      'get',
    );
    expect(listed.err).toBe('');
    expect(listed.out).toMatch(/^NAME\s.*\necho-[0-9a-f]{16}\s/);
    process.env.LEAFBRIDGE_TOKEN = reader.token;
    try {
      const fromEnv = await captureOutput(() => getCommand(['configs', '--server', base]), 10_000, 'get');
      expect(fromEnv.out).toMatch(/\necho\s/);
    } finally {
      delete process.env.LEAFBRIDGE_TOKEN;
    }
  });

  it('a token removed from the file is refused within seconds, without a restart', async () => {
    const next = newToken('ops-2', 'read-write');
    writeTokens([writer.entry, next.entry]);
    await until(
      async () => (await call(base, 'GET', '/api/v1/devices', { token: reader.token })).status === 401,
      5_000,
      'the removed token refused',
    );
    expect((await call(base, 'GET', '/api/v1/devices', { token: next.token })).status).toBe(200);
    // A broken file keeps the last good set.
    writeFileSync(tokensFile, 'tokens: [{name: x, role: admin, sha256: nothex}]\n');
    // The file is checked when a request comes (at most once a second): ask until the broken file is reported.
    await until(
      async () => {
        expect((await call(base, 'GET', '/api/v1/devices', { token: next.token })).status).toBe(200);
        return agent.stdout.join('').includes('tokens file not reloaded');
      },
      10_000,
      'the broken file reported',
    );
  });
});

describe('secure by default', () => {
  it('with nothing configured the API binds loopback and refuses anonymous requests', () => {
    const config = parseConfig({ node: 'n', dataDir: '/tmp/x' });
    expect(config.http.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(config.http.auth).toEqual({ anonymous: 'none', cacheTtlMs: 10_000 });
  });

  it('an agent with no tokens configured answers /healthz and refuses the rest', async () => {
    const dir = tempDir('lb-httpauth-');
    const agent = await startAgent(dir.path, {
      node: 'edge-1',
      dataDir: join(dir.path, 'data'),
      broker: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0' },
      devicePlugins: { dir: join(dir.path, 'no-kubelet') },
      kubernetes: 'off',
    });
    try {
      const base = `http://127.0.0.1:${agent.http.port}`;
      expect((await call(base, 'GET', '/healthz')).status).toBe(200);
      expect((await call(base, 'GET', '/api/v1/devices')).status).toBe(401);
      expect((await call(base, 'POST', '/api/v1/discoveryconfigs', { body: NEW_CONFIG })).status).toBe(401);
      expect(agent.stdout.join('')).toContain('the HTTP API answers only /healthz and /readyz');
    } finally {
      await stopProcess(agent.child);
      dir.remove();
    }
  }, 20_000);

  it('a tokens file that is not valid stops the start with exit status 2, naming the problem', () => {
    const dir = tempDir('lb-httpauth-');
    try {
      const file = join(dir.path, 'agent.yaml');
      writeFileSync(join(dir.path, 'tokens.yaml'), 'tokens:\n  - {name: a, role: admin, sha256: abc}\n');
      writeFileSync(
        file,
        stringify({
          node: 'n',
          dataDir: 'data',
          http: { listen: '127.0.0.1:0', auth: { tokensFile: 'tokens.yaml' } },
          kubernetes: 'off',
        }),
      );
      const run = spawnSync(process.execPath, [CLI, 'agent', '--config', file], {
        encoding: 'utf8',
        timeout: 10_000,
      });
      expect(run.status).toBe(2);
      expect(run.stderr).toContain('tokens[0].role: must be one of read-only, read-write');
      expect(run.stderr).toContain('tokens[0].sha256: must be 64 lowercase hex digits');
    } finally {
      dir.remove();
    }
  });
});
