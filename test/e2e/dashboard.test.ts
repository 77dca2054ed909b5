/**
 * `leafbridge demo` and its dashboard in real headless Chromium (Debian's, driven by playwright-core):
 * the page loads clean, lists every kind of simulated device, updates live, and shows an upstream outage
 * (the test cuts the cloud link through the demo's stdin) with the outbox filling and draining.
 *
 * The demo runs in a network namespace of its own (`unshare -rn`, loopback only), and Chromium joins it
 * (`nsenter`): the demo's WS-Discovery multicast on loopback then meets no other test's cameras and probes.
 * Chromium comes from scripts/install-test-deps.sh. UPDATE_SCREENSHOT=1 also copies the screenshot to
 * docs/dashboard.png.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, stopProcess, tempDir } from '../helpers/processes.js';

const CHROMIUM = process.env.LEAFBRIDGE_CHROMIUM ?? '/usr/bin/chromium';
/** As the machine notes advise: no background traffic to Google's hosts, nothing but 127.0.0.1. */
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** The page's globals, for the functions run in the page (the tests compile without the DOM library). */
interface PageNode {
  textContent: string | null;
  querySelector(selector: string): PageNode | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<PageNode> & { length: number };
  getElementById(id: string): PageNode | null;
};
declare const window: { marker?: number; pwned?: number };

const HAS_SOCAT = !spawnSync('socat', ['-V'], { stdio: 'ignore' }).error;
const INSTALL_HINT = 'run scripts/install-test-deps.sh';

/** Chromium, unshare, nsenter and ip, or an error that says what is missing and how to get it. */
function checkPrerequisites(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: ${INSTALL_HINT} (it installs Debian's chromium), ` +
        'or point LEAFBRIDGE_CHROMIUM at a Chromium binary',
    );
  }
  const probe = spawnSync('unshare', ['-rn', 'sh', '-c', 'ip link set lo up && nsenter --version'], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    throw new Error(
      `the demo runs in its own network namespace, and \`unshare -rn\` with ip and nsenter failed here ` +
        `(${(probe.stderr || probe.error?.message || '').trim()}): ${INSTALL_HINT} (util-linux, iproute2)`,
    );
  }
}

/** Runs `command` inside the demo's user and network namespaces. */
function inDemoNamespace(pid: number, command: string[]): string[] {
  return ['nsenter', '-t', String(pid), '-U', '-n', '--preserve-credentials', ...command];
}

interface Demo {
  child: ChildProcess;
  output: string[];
  startedAt: number;
  dashboard: string;
  brokerPort: number;
  /** The API token the demo made and printed. */
  token: string;
}

/**
 * Starts `leafbridge demo` on free ports in a new user and network namespace with only loopback (up);
 * resolves once it has printed its dashboard URL. `unshare` and `sh` exec, so `child.pid` is the demo.
 */
async function startDemo(dataDir: string): Promise<Demo> {
  const startedAt = Date.now();
  const demo = [
    process.execPath,
    CLI,
    'demo',
    '--http-port',
    '0',
    '--broker-port',
    '0',
    '--data-dir',
    dataDir,
  ];
  const child = spawn('unshare', ['-rn', 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', ...demo], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, LEAFBRIDGE_LOG_LEVEL: 'warn' },
  });
  const output: string[] = [];
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const found = new Promise<{ dashboard: string; brokerPort: number; token: string }>((resolve, reject) => {
    let dashboard: string | undefined;
    let token: string | undefined;
    const timer = setTimeout(
      () => reject(new Error(`no dashboard URL within 30 s:\n${output.join('')}`)),
      30_000,
    );
    child.once('exit', (code) => reject(new Error(`demo exited (${code}):\n${output.join('')}`)));
    lines.on('line', (line) => {
      output.push(`${line}\n`);
      dashboard ??= /^dashboard: (http:\/\/127\.0\.0\.1:\d+\/)$/.exec(line)?.[1];
      token ??= /^ {2}API token\s+(lbt_\S+)/.exec(line)?.[1];
      const broker = /edge broker\s+mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(line)?.[1];
      if (dashboard && broker && token) {
        clearTimeout(timer);
        resolve({ dashboard, brokerPort: Number(broker), token });
      }
    });
  });
  try {
    return { child, output, startedAt, ...(await found) };
  } catch (err) {
    await stopDemo(child);
    throw err;
  }
}

/** SIGTERM (the demo stops its simulators and the agent), SIGKILL after 10 s; resolves with the exit code. */
async function stopDemo(child: ChildProcess): Promise<number | null> {
  child.stdin?.end();
  const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  try {
    return await stopProcess(child);
  } finally {
    clearTimeout(killer);
  }
}

const text = (page: Page, selector: string) => page.locator(selector).first().textContent();

/** In the page: whether exactly `want` rows of the external handler (tcp-endpoints) are not online. */
const offlineEndpoints = (want: number) =>
  [...document.querySelectorAll('#device-rows tr')].filter(
    (tr) =>
      tr.querySelector('td.handler')?.textContent === 'tcp-endpoints' &&
      tr.querySelector('td.online span')?.textContent !== '● online',
  ).length === want;

describe('leafbridge demo: the dashboard in headless Chromium', () => {
  const dir = tempDir('lb-e2e-');
  let demo: Demo | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let failed = false;
  const problems: string[] = [];
  const requests: string[] = [];

  beforeAll(async () => {
    checkPrerequisites();
    // A tokens file left readable by others (an older run, a copy): the demo's new one must be 600 all the same.
    mkdirSync(join(dir.path, 'data'));
    writeFileSync(join(dir.path, 'data/http-tokens.yaml'), 'tokens: []\n', { mode: 0o644 });
    demo = await startDemo(join(dir.path, 'data'));
    // Chromium in the demo's namespace, where its 127.0.0.1 is; playwright talks to it over pipes.
    const wrapper = join(dir.path, 'chromium-in-demo-netns.sh');
    const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;
    const command = inDemoNamespace(demo.child.pid as number, [CHROMIUM])
      .map(quote)
      .join(' ');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${command} "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({ executablePath: wrapper, args: CHROMIUM_ARGS, timeout: 20_000 });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(demo.dashboard);
  }, 60_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });

  afterAll(async () => {
    if (failed && (page as Page | undefined) && !page.isClosed())
      await page.screenshot({ path: join(dir.path, 'failure.png'), fullPage: true });
    await browser?.close();
    if (demo) {
      await stopDemo(demo.child);
      writeFileSync(join(dir.path, 'demo.log'), demo.output.join(''));
    }
    if (failed) console.info(`dashboard e2e: screenshots and the demo's output kept in ${dir.path}`);
    else dir.remove();
  }, 20_000);

  it('asks for the API token, refuses a wrong one, and goes live with the one the demo printed', async () => {
    await page.locator('#token-form').waitFor();
    expect(await text(page, '#stream-state')).toBe('token needed');
    await page.locator('#token').fill('lbt_wrong');
    await page.locator('#token-form button').click();
    await page.locator('#token-error', { hasText: 'the token is not valid' }).waitFor();
    // Chromium logs the refused request (401) as a console error: that one, and only that, is expected.
    expect(problems.splice(0)).toEqual([expect.stringMatching(/status of 401/)]);
    await page.locator('#token').fill(demo!.token);
    await page.locator('#token-form button').click();
    await page.locator('#stream-state.live').waitFor();
    expect(await page.locator('#token-form').isHidden()).toBe(true);
    // The token travels in a header, never in a URL (history, logs, Referer).
    expect(requests.filter((u) => u.includes(demo!.token) || u.includes('lbt_'))).toEqual([]);
    // It is kept for this tab only (sessionStorage), not for every later visit (localStorage).
    expect(await page.evaluate('Object.values(sessionStorage)')).toContain(demo!.token);
    expect(await page.evaluate('Object.values(localStorage)')).toEqual([]);
    // The token's hash is in a file only its user reads.
    expect(statSync(join(dir.path, 'data/http-tokens.yaml')).mode & 0o777).toBe(0o600);
  });

  it('loads with no console errors and nothing fetched from outside the agent', async () => {
    await page.locator('#stream-state.live').waitFor();
    expect(await page.title()).toBe('leafbridge');
    expect(await text(page, '#node')).toBe('node demo');
    const origin = new URL(demo!.dashboard).origin;
    expect(requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:'))).toEqual([]);
    expect(problems).toEqual([]);
  });

  it('lists a device of every kind within 30 s of the demo starting', async () => {
    // modbus: the demo's meters; tcp-endpoints: its external handler, over Akri's gRPC protocol.
    const kinds = [
      'debug-echo',
      'modbus',
      'mqtt',
      'onvif',
      'opcua',
      'tcp-endpoints',
      ...(HAS_SOCAT ? ['serial'] : []),
    ];
    const left = 30_000 - (Date.now() - demo!.startedAt);
    await page.waitForFunction(
      (want) => {
        const cells = [...document.querySelectorAll('#device-rows td.handler')].map((c) => c.textContent);
        const n = (kind: string) => cells.filter((c) => c === kind).length;
        // Two meters, and two endpoints the external handler watches (the meters' server, the cloud broker).
        return (
          want.every((k) => cells.includes(k)) &&
          n('mqtt') === 3 &&
          n('modbus') === 2 &&
          n('tcp-endpoints') === 2
        );
      },
      kinds,
      { timeout: Math.max(left, 1) },
    );
    console.info(
      `dashboard e2e: every kind listed ${Date.now() - demo!.startedAt} ms after the demo started`,
    );
    const rows = await page.locator('#device-rows tr').evaluateAll((trs) =>
      trs.map((tr) => ({
        name: tr.querySelector('td.name')?.textContent,
        config: tr.querySelector('td.config')?.textContent,
        handler: tr.querySelector('td.handler')?.textContent,
        online: tr.querySelector('td.online span')?.textContent,
      })),
    );
    const configOf = {
      onvif: 'cameras',
      opcua: 'plcs',
      serial: 'serial-sensors',
      mqtt: 'mqtt-sensors',
      'debug-echo': 'echo',
      modbus: 'modbus-meters',
      'tcp-endpoints': 'tcp-endpoints',
    };
    for (const row of rows) {
      expect(row.config).toBe(configOf[row.handler as keyof typeof configOf]);
      expect(row.name).toMatch(new RegExp(`^${row.config}-[0-9a-f]{16}$`));
      expect(row.online).toBe('● online');
    }
    if (!HAS_SOCAT)
      expect(demo!.output.join('')).toContain('skipped         serial sensor: socat is not installed');
    const configs = await page.locator('#config-rows td.name').allTextContents();
    expect(configs.sort()).toEqual([
      'cameras',
      'echo',
      'modbus-meters',
      'mqtt-sensors',
      'plcs',
      ...(HAS_SOCAT ? ['serial-sensors'] : []),
      'tcp-endpoints',
    ]);
    // sensor-1's twins: desired from the demo's cloud, reported back by the sensor.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#device-rows td.twin summary')].some((s) =>
        /desired v1$/.test(s.textContent ?? ''),
      ),
    );
  });

  it('updates live without a reload: telemetry counts go up', async () => {
    await page.evaluate(() => {
      window.marker = 42;
    });
    const counts = () => page.locator('#device-rows td.telemetry .telemetry-count').allTextContents();
    await page.waitForFunction(() => document.querySelectorAll('#device-rows .telemetry-count').length > 0);
    const before = (await counts()).map(Number);
    await page.waitForFunction(
      (was) => {
        const now = [...document.querySelectorAll('#device-rows .telemetry-count')].map((c) =>
          Number(c.textContent),
        );
        return now.some((n, i) => n > (was[i] ?? 0));
      },
      before,
      { timeout: 10_000 },
    );
    expect(await page.evaluate(() => window.marker)).toBe(42);
    expect(await text(page, '#rate-in')).toMatch(/^\d/);
  });

  it('shows an upstream outage: disconnected and the outbox filling, then drained to 0 once restored', async () => {
    const stdin = demo!.child.stdin!;
    const depth = () => page.evaluate(() => Number(document.getElementById('outbox-depth')?.textContent));
    const t0 = Date.now();
    stdin.write('u\n');
    await page.locator('#upstream-state', { hasText: /^disconnected$/ }).waitFor({ timeout: 10_000 });
    await page.waitForFunction(() => Number(document.getElementById('outbox-depth')?.textContent) > 0, null, {
      timeout: 10_000,
    });
    await page.waitForFunction(
      () => Number(document.getElementById('outbox-depth')?.textContent) >= 6,
      null,
      {
        timeout: 10_000,
      },
    );
    const peak = await depth();
    expect(await page.locator('#chart rect.disconnected').count()).toBeGreaterThan(0);
    // The external handler watches the cloud broker's port: that endpoint's Device goes offline too.
    await page.waitForFunction(offlineEndpoints, 1, { timeout: 15_000 });
    const t1 = Date.now();
    stdin.write('u\n');
    await page.locator('#upstream-state', { hasText: /^connected$/ }).waitFor({ timeout: 15_000 });
    await page.waitForFunction(() => document.getElementById('outbox-depth')?.textContent === '0', null, {
      timeout: 15_000,
    });
    await page.waitForFunction(offlineEndpoints, 0, { timeout: 15_000 });
    console.info(
      `dashboard e2e: outage shown, outbox up to ${peak} in ${t1 - t0} ms; drained ${Date.now() - t1} ms after the restore`,
    );
    expect(problems).toEqual([]);
  });

  it('takes a screenshot', async () => {
    await page.waitForTimeout(1_500); // one more sample, so the chart shows the drain
    const shot = join(dir.path, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(existsSync(shot)).toBe(true);
    if (process.env.UPDATE_SCREENSHOT === '1') {
      copyFileSync(shot, join(ROOT, 'docs/dashboard.png'));
      console.info('dashboard e2e: docs/dashboard.png updated');
    }
  });

  it('shows hostile MQTT ids as text', async () => {
    const id = '<img src=x onerror="window.pwned=1">';
    // Published from inside the demo's namespace, by a node process with this repository's mqtt.
    const publish = `
      import mqtt from 'mqtt';
      const [url, topic, payload] = process.argv.slice(1);
      const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
      await client.publishAsync(topic, payload, { qos: 1 });
      await client.endAsync();`;
    const args = [
      ...['--input-type=module', '-e', publish, `mqtt://127.0.0.1:${demo!.brokerPort}`],
      ...[`devices/${id}/telemetry/t`, '<script>window.pwned=2</script>'],
    ];
    const [nsenter, ...rest] = inDemoNamespace(demo!.child.pid as number, [process.execPath, ...args]);
    await promisify(execFile)(nsenter as string, rest, { cwd: ROOT, timeout: 10_000 });
    const row = page.locator('#other-rows tr').filter({ hasText: 'onerror' });
    await row.waitFor();
    expect(await row.locator('td.name').textContent()).toBe(id);
    expect(await row.locator('.telemetry-value').textContent()).toBe('<script>window.pwned=2</script>');
    expect(await page.locator('#other-rows img, #other-rows script').count()).toBe(0);
    expect(await page.evaluate(() => window.pwned)).toBeUndefined();
    expect(problems).toEqual([]);
  });

  it('stops cleanly on SIGTERM: exit 0, its simulators gone', async () => {
    await browser?.close();
    browser = undefined;
    const started = Date.now();
    const code = await stopDemo(demo!.child);
    console.info(`dashboard e2e: demo stopped in ${Date.now() - started} ms`);
    expect(code).toBe(0);
    if (HAS_SOCAT) expect(existsSync(join(dir.path, 'data/serial/ttyLB0'))).toBe(false);
  });
});
