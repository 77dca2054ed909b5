import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { base64File, type ControlPlaneCerts, makeControlPlaneCerts } from './controlPlaneCerts.js';
import { freePort, ROOT, tempDir } from './processes.js';
import { until } from './wait.js';

/**
 * The real Kubernetes control plane for tests: etcd, kube-apiserver (RBAC on, service-account tokens signed
 * by a key made at start), kube-controller-manager (garbage collector, namespace, node-lifecycle,
 * service-account, Job and pod-GC controllers) and kube-scheduler, built from the Go module proxy by
 * scripts/build-control-plane.sh, all on 127.0.0.1 with fresh data dirs. No kubelet runs: tests write Node
 * objects and keep their Leases fresh as a kubelet would (test/helpers/fakeNodes.ts).
 *
 *   const cp = await ControlPlane.start();
 *   await cp.installCrdsAndRbac();                            // deploy/ as a user applies it, through kubectl
 *   const kubeconfig = await cp.writeKubeconfig(dir, { serviceAccount: 'leafbridge-agent' });
 *   ... await cp.killApiserver(); await cp.startApiserver(); await cp.compactEtcd() ...
 *   await cp.close();
 */

export interface ControlPlaneOptions {
  /** Resources (`devices.leafbridge.io`) served without the watch cache, so an etcd compaction reaches their watches as 410 Gone. */
  uncachedWatches?: string[];
  /** How long a Node may miss heartbeats before the node-lifecycle controller marks it NotReady. Default 20 s. */
  nodeMonitorGracePeriod?: string;
}

export type Identity = 'admin' | { serviceAccount: string; namespace?: string };

export interface ApiAnswer {
  status: number;
  body: unknown;
}

/**
 * Where the control-plane binaries are, if this machine has them: LEAFBRIDGE_CONTROL_PLANE_BIN (scripts/test.sh
 * sets it), else the cache scripts/build-control-plane.sh fills, found by the same key (a hash of the pins).
 */
export function controlPlaneBin(): string | undefined {
  const cache =
    process.env.LEAFBRIDGE_CONTROL_PLANE_CACHE ?? join(homedir(), '.cache/leafbridge/control-plane');
  const named = process.env.LEAFBRIDGE_CONTROL_PLANE_BIN;
  if (named === '') return undefined; // scripts/test.sh found no Go: the suite is skipped, whatever is cached
  const dir = named ?? join(cache, pinsKey(), 'bin');
  return existsSync(join(dir, 'kube-apiserver')) ? dir : undefined;
}

/** The cache key of scripts/build-control-plane.sh: sha256 of tools/controlplane/{*}/go.mod then {*}/go.sum. */
function pinsKey(): string {
  const tools = join(ROOT, 'tools/controlplane');
  const dirs = readdirSync(tools).sort();
  const hash = createHash('sha256');
  for (const file of ['go.mod', 'go.sum'])
    for (const d of dirs) hash.update(readFileSync(join(tools, d, file)));
  return hash.digest('hex').slice(0, 16);
}

/** The namespace deploy/ installs into: the agents' Devices and the controller's brokers live there. */
export const INSTALL_NS = 'leafbridge';

interface Running {
  child: ChildProcess;
  log: string;
}

export class ControlPlane {
  private readonly processes = new Map<string, Running>();
  /** The admin's connections, kept alive (a bench makes thousands of requests). */
  private readonly keepAlive = new HttpsAgent({ keepAlive: true, maxSockets: 32 });
  private etcdPort = 0;
  private apiPort = 0;
  private closing = false;

  private constructor(
    readonly bin: string,
    private readonly dir: { path: string; remove(): void },
    readonly certs: ControlPlaneCerts,
    private readonly options: ControlPlaneOptions,
  ) {}

  static async start(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const bin = controlPlaneBin();
    if (!bin)
      throw new Error(
        'no control-plane binaries (LEAFBRIDGE_CONTROL_PLANE_BIN unset): run scripts/build-control-plane.sh',
      );
    const dir = tempDir('lb-cp-');
    const certs = makeControlPlaneCerts(dir.path);
    const cp = new ControlPlane(bin, dir, certs, options);
    try {
      await cp.startEtcd();
      await cp.startApiserver();
      writeFileSync(cp.adminKubeconfig, stringify(cp.kubeconfig({ user: cp.adminUser() })));
      await cp.startControllers();
      return cp;
    } catch (err) {
      await cp.close();
      throw err;
    }
  }

  get url(): string {
    return `https://127.0.0.1:${this.apiPort}`;
  }

  get etcdUrl(): string {
    return `http://127.0.0.1:${this.etcdPort}`;
  }

  get adminKubeconfig(): string {
    return join(this.dir.path, 'admin.kubeconfig');
  }

  // ------------------------------------------------------------------------------------------ processes

  private async startEtcd(): Promise<void> {
    await this.listenWithRetry(
      'etcd',
      async () => {
        this.etcdPort = await freePort();
        const peer = await freePort();
        const data = join(this.dir.path, 'etcd');
        return [
          '--name=test',
          `--data-dir=${data}`,
          '--log-level=warn',
          '--unsafe-no-fsync',
          `--listen-client-urls=${this.etcdUrl}`,
          `--advertise-client-urls=${this.etcdUrl}`,
          `--listen-peer-urls=http://127.0.0.1:${peer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
          `--initial-cluster=test=http://127.0.0.1:${peer}`,
          '--listen-metrics-urls=',
        ];
      },
      () => this.etcdHealthy(),
    );
  }

  private async etcdHealthy(): Promise<boolean> {
    try {
      const res = await fetch(`${this.etcdUrl}/health`);
      return res.ok;
    } catch {
      return false;
    }
  }

  /** Starts kube-apiserver (again, after `killApiserver`, on the same port and etcd). */
  async startApiserver(): Promise<void> {
    const c = this.certs;
    const uncached = (this.options.uncachedWatches ?? []).map((r) => `${r}#0`);
    const keepPort = this.apiPort !== 0;
    await this.listenWithRetry(
      'kube-apiserver',
      async () => {
        if (!keepPort) this.apiPort = await freePort();
        return [
          `--etcd-servers=${this.etcdUrl}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${this.apiPort}`,
          `--tls-cert-file=${c.servingCert}`,
          `--tls-private-key-file=${c.servingKey}`,
          `--client-ca-file=${c.caCert}`,
          '--authorization-mode=RBAC',
          '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
          `--service-account-key-file=${c.saPub}`,
          `--service-account-signing-key-file=${c.saKey}`,
          '--service-cluster-ip-range=10.96.0.0/16',
          '--advertise-address=127.0.0.1',
          '--endpoint-reconciler-type=none',
          '--allow-privileged=true',
          '--profiling=false',
          '--v=0',
          ...(uncached.length ? [`--watch-cache-sizes=${uncached.join(',')}`] : []),
        ];
      },
      async () => (await this.request('GET', '/readyz').catch(() => ({ status: 0 }))).status === 200,
    );
  }

  /** SIGKILL: the apiserver vanishes mid-request, as in a crash; etcd keeps the state. */
  async killApiserver(): Promise<void> {
    await this.stopProcess('kube-apiserver', 'SIGKILL');
  }

  private async startControllers(): Promise<void> {
    const grace = this.options.nodeMonitorGracePeriod ?? '20s';
    this.spawn('kube-controller-manager', [
      `--kubeconfig=${this.adminKubeconfig}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--controllers=garbagecollector,namespace,nodelifecycle,serviceaccount,job,podgc',
      '--use-service-account-credentials=false',
      `--root-ca-file=${this.certs.caCert}`,
      `--node-monitor-grace-period=${grace}`,
      '--node-monitor-period=2s',
      '--v=0',
    ]);
    this.spawn('kube-scheduler', [
      `--kubeconfig=${this.adminKubeconfig}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--v=0',
    ]);
    // The namespace controller and the service-account controller are working once `default` has its account.
    await until(
      async () =>
        (await this.request('GET', '/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
      60_000,
      'the controller-manager to create the default service account',
    );
  }

  private spawn(name: string, args: string[]): Running {
    const log = join(this.dir.path, `${name}.log`);
    const out = createWriteStream(log, { flags: 'a' });
    const child = spawn(join(this.bin, name), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    const running = { child, log };
    this.processes.set(name, running);
    child.once('exit', () => {
      if (this.processes.get(name) === running) this.processes.delete(name);
    });
    return running;
  }

  /**
   * Starts `name` with the arguments `args()` makes (ports picked anew each try) until `ready()`; a process
   * that exits first because its port was taken in between is tried again, anything else fails with its log.
   */
  private async listenWithRetry(
    name: string,
    args: () => Promise<string[]>,
    ready: () => Promise<boolean>,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const running = this.spawn(name, await args());
      const exited = new Promise<number | null>((r) => running.child.once('exit', (code) => r(code)));
      let gone = false;
      void exited.then(() => {
        gone = true;
      });
      try {
        await until(async () => gone || (await ready()), 90_000, `${name} to become ready`);
      } catch (err) {
        await this.stopProcess(name, 'SIGKILL');
        throw new Error(`${(err as Error).message}\n${tail(running.log)}`);
      }
      if (!gone) return;
      const log = tail(running.log);
      if (attempt >= 5 || !/address already in use/i.test(log)) {
        throw new Error(`${name} exited before it was ready:\n${log}`);
      }
    }
  }

  private async stopProcess(name: string, signal: NodeJS.Signals): Promise<void> {
    const running = this.processes.get(name);
    if (!running) return;
    const { child } = running;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((r) => {
      const hard = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(hard);
        r();
      });
      child.kill(signal);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    this.keepAlive.destroy();
    for (const name of ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd']) {
      await this.stopProcess(name, 'SIGTERM');
    }
    if (!process.env.LEAFBRIDGE_KEEP_CONTROL_PLANE_LOGS) this.dir.remove();
  }

  /** The last lines a component logged (for failure messages). */
  logOf(name: string): string {
    return tail(join(this.dir.path, `${name}.log`));
  }

  // ------------------------------------------------------------------------------------------ talking to it

  /**
   * One request as the cluster admin (client certificate in group system:masters). A 429 is waited out as
   * clients do (a new CRD answers "storage is (re)initializing" until its watch cache is ready), up to 30 s.
   */
  async request(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<ApiAnswer> {
    const end = Date.now() + 30_000;
    for (;;) {
      const answer = await this.requestOnce(method, path, body, contentType);
      if (answer.status !== 429 || Date.now() > end) return answer;
      const after =
        (answer.body as { details?: { retryAfterSeconds?: number } }).details?.retryAfterSeconds ?? 1;
      await new Promise((r) => setTimeout(r, Math.min(after, 5) * 1000));
    }
  }

  /** One request as the admin, its answer as it is (a 429 too), over a kept-alive connection. */
  requestOnce(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<ApiAnswer> {
    return this.requestAs(
      { cert: this.certs.adminCert, key: this.certs.adminKey },
      method,
      path,
      body,
      contentType,
    );
  }

  /** One request with a bearer token (a service account's, say). */
  requestWithToken(token: string, method: string, path: string, body?: unknown): Promise<ApiAnswer> {
    return this.requestAs({ token }, method, path, body, 'application/json');
  }

  private requestAs(
    auth: { cert: string; key: string } | { token: string },
    method: string,
    path: string,
    body: unknown,
    contentType: string,
  ): Promise<ApiAnswer> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: this.apiPort,
          method,
          path,
          ca: readFileSync(this.certs.caCert),
          ...('token' in auth
            ? { headers: { authorization: `Bearer ${auth.token}` } }
            : { cert: readFileSync(auth.cert), key: readFileSync(auth.key), agent: this.keepAlive }),
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {}
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
      req.on('error', reject);
      if (payload !== undefined) {
        // Node sends a DELETE body without chunking: without a length the server takes it for no body.
        req.setHeader('content-type', contentType);
        req.setHeader('content-length', Buffer.byteLength(payload));
        req.end(payload);
      } else req.end();
    });
  }

  /** kubectl (built with the control plane) as the admin; resolves with stdout, rejects with stderr. */
  kubectl(args: string[], input?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        join(this.bin, 'kubectl'),
        [`--kubeconfig=${this.adminKubeconfig}`, ...args],
        { cwd: ROOT, timeout: 60_000, maxBuffer: 32 << 20 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
      );
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  /** A bound token of a service account, from the TokenRequest API. */
  async token(serviceAccount: string, namespace = INSTALL_NS): Promise<string> {
    const res = await this.request(
      'POST',
      `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 7200 } },
    );
    const token = (res.body as { status?: { token?: string } }).status?.token;
    if (res.status !== 201 || !token)
      throw new Error(`token for ${namespace}/${serviceAccount}: ${res.status} ${JSON.stringify(res.body)}`);
    return token;
  }

  /** A kubeconfig for `identity` with `namespace` as its default, written into `dir`. */
  async writeKubeconfig(dir: string, identity: Identity, namespace = INSTALL_NS): Promise<string> {
    mkdirSync(dir, { recursive: true });
    const user =
      identity === 'admin'
        ? this.adminUser()
        : { token: await this.token(identity.serviceAccount, identity.namespace ?? INSTALL_NS) };
    const name = identity === 'admin' ? 'admin' : identity.serviceAccount;
    const file = join(dir, `${name}.kubeconfig`);
    writeFileSync(file, stringify(this.kubeconfig({ user, namespace })));
    return file;
  }

  private adminUser() {
    return {
      'client-certificate-data': base64File(this.certs.adminCert),
      'client-key-data': base64File(this.certs.adminKey),
    };
  }

  private kubeconfig({ user, namespace = 'default' }: { user: Record<string, string>; namespace?: string }) {
    return {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'test',
          cluster: { server: this.url, 'certificate-authority-data': base64File(this.certs.caCert) },
        },
      ],
      users: [{ name: 'test', user }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test', namespace } }],
      'current-context': 'test',
    };
  }

  /**
   * deploy/crds, deploy/agent, deploy/controller and deploy/hub applied with kubectl, as a user installs
   * leafbridge (kubectl apply -k); then waits until the CRDs are served.
   */
  async installDeploy(
    dirs = ['deploy/crds', 'deploy/agent', 'deploy/controller', 'deploy/hub'],
  ): Promise<void> {
    for (const d of dirs) await this.kubectl(['apply', '-k', d]);
    await this.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/devices.leafbridge.io',
      'crd/discoveryconfigs.leafbridge.io',
    ]);
  }

  // ------------------------------------------------------------------------------------------ etcd

  /** Compacts etcd up to its current revision (and defragments nothing): older resourceVersions are gone. */
  async compactEtcd(): Promise<number> {
    const range = await fetch(`${this.etcdUrl}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('/').toString('base64') }),
    });
    const revision = Number(((await range.json()) as { header: { revision: string } }).header.revision);
    const res = await fetch(`${this.etcdUrl}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: String(revision), physical: true }),
    });
    if (!res.ok) throw new Error(`etcd compaction: ${res.status} ${await res.text()}`);
    return revision;
  }

  get isClosing(): boolean {
    return this.closing;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
