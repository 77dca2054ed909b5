import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../src/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { deviceName } from '../../src/model/naming.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';
import { agentConfig } from './agentConfig.js';
import { type ClusterBackend, DoubleBackend } from './clusterBackend.js';
import type { KubeApiServer } from './kubeApiServer.js';
import type { KubeObject } from './kubeStore.js';
import { type AgentProcess, startAgent, stopProcess, tempDir } from './processes.js';
import { TestKubelet } from './testKubelet.js';

export const NS = 'default';

export interface NodeOptions {
  grace?: string;
  kubelet?: boolean;
  release?: { interval: string; grace: string };
  logger?: Logger;
}

export interface ClusterNode {
  name: string;
  dir: { path: string; remove(): void };
  agent?: Agent;
  /** The agent as a process of its own (the built CLI), when started with `process: true`. */
  process?: AgentProcess;
  /** The node's test kubelet, when started with `kubelet: true`. */
  kubelet?: TestKubelet;
}

/**
 * In-process agents on several nodes against one API server: the test double by default, or the real
 * control plane (`TestCluster.on(await RealBackend.start(), ...)`), where each agent runs as the
 * leafbridge-agent service account under the RBAC in deploy/. Devices are debug-echo devices switched on and off per node
 * by a presence file whose path names the node (`presence-{node}`), so a test decides what each node sees.
 */
export class TestCluster {
  readonly nodes = new Map<string, ClusterNode>();
  /** Where the presence files are (differs per cluster: take it out when comparing objects). */
  readonly shared = tempDir('lb-presence-');

  private constructor(readonly backend: ClusterBackend) {}

  /** A test API server with the CRDs and Node objects `nodes` (with their labels). */
  static async start(
    nodes: Record<string, Record<string, string>> = { n1: {}, n2: {} },
  ): Promise<TestCluster> {
    return TestCluster.on(await DoubleBackend.start(), nodes);
  }

  /** Agents against `backend`, which gets the Node objects `nodes` (with their labels). */
  static async on(
    backend: ClusterBackend,
    nodes: Record<string, Record<string, string>> = { n1: {}, n2: {} },
  ): Promise<TestCluster> {
    for (const [name, labels] of Object.entries(nodes)) await backend.addNode(name, labels);
    return new TestCluster(backend);
  }

  /** The test double (its storage, its fault injection); only for clusters on the double. */
  get api(): KubeApiServer {
    if (this.backend instanceof DoubleBackend) return this.backend.api;
    throw new Error('this cluster runs on the real control plane, not the test double');
  }

  /** A DiscoveryConfig of shared debug-echo cameras `ids`, present on each node as its presence file says. */
  cameras(name: string, ids: string[], spec: Record<string, unknown> = {}) {
    return {
      apiVersion: 'leafbridge.io/v1alpha1',
      kind: 'DiscoveryConfig',
      metadata: { name, namespace: this.backend.namespace },
      spec: {
        handler: {
          name: 'debug-echo',
          details: {
            devices: ids.map((id) => ({ id, properties: { CAMERA: id } })),
            shared: true,
            pollIntervalMs: 100,
            presenceFile: join(this.shared.path, 'presence-{node}'),
          },
        },
        capacity: 2,
        ...spec,
      },
    };
  }

  /** What node `name` sees from now on (device ids). */
  see(name: string, ids: string[]): void {
    writeFileSync(join(this.shared.path, `presence-${name}`), ids.map((id) => `${id}\n`).join(''));
  }

  /**
   * Starts (or restarts, keeping its data dir and kubelet) the agent of node `name`. With `kubelet`, the node
   * gets a test kubelet in its own device-plugin directory, started before the agent.
   */
  async startNode(name: string, options: NodeOptions = {}): Promise<Agent> {
    const { node, config } = await this.prepareNode(name, options);
    const agent = new Agent(parseConfig(config), options.logger ?? silentLogger());
    await agent.start();
    node.agent = agent;
    return agent;
  }

  /** As startNode, but the agent runs as a process of its own (the built CLI), so a test can kill it. */
  async startNodeProcess(name: string, options: Omit<NodeOptions, 'logger'> = {}): Promise<AgentProcess> {
    const { node, config } = await this.prepareNode(name, options);
    node.process = await startAgent(node.dir.path, config);
    return node.process;
  }

  /** Kills node `name`'s agent process with SIGKILL: no shutdown code runs. */
  async killNode(name: string): Promise<void> {
    const node = this.nodes.get(name);
    if (node?.process) await stopProcess(node.process.child, 'SIGKILL');
    if (node) node.process = undefined;
  }

  private async prepareNode(name: string, options: NodeOptions) {
    const node = this.nodes.get(name) ?? { name, dir: tempDir(`lb-${name}-`) };
    this.nodes.set(name, node);
    const plugins = join(node.dir.path, 'device-plugins');
    const podResources = join(node.dir.path, 'pod-resources.sock');
    if (options.kubelet && !node.kubelet) {
      mkdirSync(plugins, { recursive: true });
      node.kubelet = new TestKubelet(plugins, { podResourcesSocket: podResources });
      await node.kubelet.start();
    }
    const devicePlugins = {
      dir: plugins,
      podResources,
      ...(options.release
        ? { releaseInterval: options.release.interval, releaseGrace: options.release.grace }
        : {}),
    };
    const config = agentConfig(node.dir.path, undefined, {
      node: name,
      kubernetes: await this.backend.kubeconfig(node.dir.path, 'agent'),
      discovery: { gracePeriod: options.grace ?? '20s' },
      ...(node.kubelet ? { devicePlugins } : {}),
    });
    return { node, config };
  }

  async stopNode(name: string): Promise<void> {
    const node = this.nodes.get(name);
    await node?.agent?.stop();
    if (node) node.agent = undefined;
  }

  /** Device writes node `name`'s agent has queued or in flight (asked in process, or read from its metric). */
  async pendingWrites(name: string): Promise<number> {
    const node = this.nodes.get(name);
    if (node?.agent) return node.agent.pendingDeviceWrites();
    if (!node?.process) throw new Error(`node ${name} has no agent running`);
    const { host, port } = node.process.http;
    const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
    const m = /^leafbridge_device_writes_pending (\d+)$/m.exec(text);
    if (!m) throw new Error('leafbridge_device_writes_pending not in the metrics');
    return Number(m[1]);
  }

  kubelet(name: string): TestKubelet {
    const k = this.nodes.get(name)?.kubelet;
    if (!k) throw new Error(`node ${name} has no test kubelet`);
    return k;
  }

  /** The server's Devices, read from its storage (not through any agent). */
  devices(): Map<string, KubeObject> {
    return new Map(this.api.objects('devices', NS).map((o) => [o.metadata.name, o]));
  }

  /** The server's Devices, read as the admin (either backend). */
  async deviceList(): Promise<Map<string, KubeObject>> {
    return new Map((await this.backend.list('devices')).map((o) => [o.metadata.name, o]));
  }

  async close(): Promise<void> {
    for (const n of this.nodes.values()) {
      await n.agent?.stop();
      if (n.process) await stopProcess(n.process.child, 'SIGKILL');
      await n.kubelet?.stop();
      n.dir.remove();
    }
    this.nodes.clear();
    await this.backend.close();
    this.shared.remove();
  }
}

/** The Device name of debug-echo camera `id` of config `config` (shared: no node in the name). */
export const cameraName = (id: string, config = 'cams') => deviceName(config, id, undefined);
