import type { KubeConfig } from '@kubernetes/client-node';
import { ApiWriter, collectionPath, type Plural } from '../kubeclient/apiWriter.js';
import { Informer, type InformerEvent, type KubeObject } from '../kubeclient/informer.js';
import { KubeRest } from '../kubeclient/kubeRest.js';
import { brokerNamespace, DEFAULT_BROKER_NAMESPACE } from '../model/podSecurity.js';
import { type Clock, systemClock } from '../util/clock.js';
import { stableJson } from '../util/json.js';
import { child, type Logger } from '../util/logger.js';
import { brokerOwnerOf, LABEL_BROKER, LABEL_NAMESPACE } from './brokerSpec.js';
import { reconcileConfig } from './configReconciler.js';
import { Backoff, type BrokerSpace, type ControllerContext, Problems } from './context.js';
import { reconcileDevice } from './deviceReconciler.js';
import { NodeHealth } from './nodeHealth.js';
import { deviceView, podNode } from './objects.js';
import { PodSecurityAllowance } from './podSecurity.js';
import { type Outcome, WorkQueue } from './workQueue.js';

export interface BrokerControllerOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /**
   * The namespace of the broker objects that need Pod Security `restricted` (default leafbridge-brokers);
   * those that need `baseline` or `privileged` go to `NS-baseline` / `NS-privileged`. They must exist,
   * labelled to enforce their level, with RBAC for the controller in them (the install makes them).
   */
  brokerNamespace?: string;
  /** Which DiscoveryConfigs may run brokers above `restricted` (default: none). */
  allowance?: PodSecurityAllowance;
  logger: Logger;
  clock?: Clock;
  /** A broker Pod Pending longer than this (since it was made, or since its device came back) is replaced. Default 5 min. */
  pendingTimeoutMs?: number;
  /**
   * A Node whose Ready condition has not been True for this long (from its lastTransitionTime) is lost: it is
   * taken out of every Device's `spec.nodes` and its broker pods are made again elsewhere. Default 40 s, on
   * top of the ~40 s the node lifecycle controller waits before it marks a silent node not Ready; well
   * before the 5 min after which Kubernetes evicts its pods.
   */
  nodeGraceMs?: number;
  /** Every object is reconciled again this often, whatever the watches said. Default 2 min. */
  resyncMs?: number;
  /** Retry delays for failed list/watches and failed reconciles (full jitter). Default 500 ms … 30 s. */
  backoff?: { baseMs: number; maxMs: number };
  /** Spacing of repeated replacements of one device's pod (it fails at once, again and again). Default 10 s … 5 min. */
  restartBackoff?: { baseMs: number; maxMs: number };
  /** Reconciles at once. Default 4. */
  workers?: number;
  /** A request to the API server without an answer for this long fails. Default 30 s. */
  requestTimeoutMs?: number;
}

/**
 * `leafbridge controller`: per Device whose DiscoveryConfig has a `brokerPodSpec` (or `brokerJobSpec`), a
 * broker Pod (or Job) pinned to the nodes that see the device and holding one of its device-plugin slots,
 * plus the optional per-device and per-config Services; it keeps Devices' `spec.nodes` free of lost Nodes
 * and writes each config's `status.brokers` and `BrokersReady` condition.
 *
 * Broker objects live in broker namespaces, one per Pod Security level in use (podSecurity.ts), apart from
 * the Devices: they carry labels naming their Device (namespace, name, uid) instead of owner references,
 * and the controller deletes those whose Device is gone or is another object now.
 *
 * Level-triggered: list+watch caches of DiscoveryConfigs, Devices, Nodes and, in each broker namespace,
 * broker Pods, Jobs and Services (by the `leafbridge.io/broker` and `leafbridge.io/namespace` labels); each event queues the keys it touches (`device:NAME`,
 * `config:NAME`) on one coalescing work queue, and each pass makes the objects match the caches. Failed
 * passes are retried with backoff and jitter; everything is queued again after each re-list and every
 * `resyncMs`. Nothing is done before the caches have been listed once (a half-read cluster looks like one
 * where brokers must be deleted).
 */
export class BrokerController {
  private readonly logger: Logger;
  private readonly queue: WorkQueue;
  private readonly ctx: ControllerContext;
  private readonly informers: Informer[];
  private readonly rest: KubeRest;
  private readonly brokers: BrokerSpace[];
  private resyncTimer: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;
  /** Resolves once every cache has been listed and the work queue runs. */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly o: BrokerControllerOptions) {
    this.logger = child(o.logger, 'controller');
    const clock = o.clock ?? systemClock;
    const backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
    const rest = new KubeRest(o.kubeConfig, { timeoutMs: o.requestTimeoutMs ?? 30_000 });
    this.rest = rest;
    this.queue = new WorkQueue({ clock, logger: this.logger, backoff, workers: o.workers ?? 4 });
    const informer = (plural: Plural, what: string, labelSelector?: string, namespace = o.namespace) =>
      new Informer({
        rest,
        path: collectionPath(plural, namespace),
        ...(labelSelector ? { labelSelector } : {}),
        what,
        logger: this.logger,
        backoff,
        onEvent: (e) => this.route(plural, e),
        onList: () => this.listed(plural),
      });
    const caches = {
      configs: informer('discoveryconfigs', 'DiscoveryConfigs'),
      devices: informer('devices', 'Devices'),
      nodes: informer('nodes', 'Nodes'),
    };
    const allowance = o.allowance ?? new PodSecurityAllowance();
    const mine = `${LABEL_NAMESPACE}=${o.namespace}`;
    this.brokers = allowance.levelsInUse().map((level) => {
      const ns = brokerNamespace(o.brokerNamespace ?? DEFAULT_BROKER_NAMESPACE, level);
      return {
        level,
        namespace: ns,
        writer: new ApiWriter(rest, ns),
        pods: informer('pods', `broker Pods in ${ns}`, `${LABEL_BROKER}=pod,${mine}`, ns),
        jobs: informer('jobs', `broker Jobs in ${ns}`, `${LABEL_BROKER},${mine}`, ns),
        services: informer('services', `broker Services in ${ns}`, `${LABEL_BROKER},${mine}`, ns),
      };
    });
    this.informers = [...Object.values(caches), ...this.brokers.flatMap((b) => [b.pods, b.jobs, b.services])];
    const restart = o.restartBackoff ?? { baseMs: 10_000, maxMs: 300_000 };
    this.ctx = {
      namespace: o.namespace,
      writer: new ApiWriter(rest, o.namespace),
      logger: this.logger,
      clock,
      caches,
      brokers: this.brokers,
      allowance,
      nodeHealth: new NodeHealth(caches.nodes, o.nodeGraceMs ?? 40_000, clock),
      problems: new Problems(),
      restarts: new Backoff(clock, restart.baseMs, restart.maxMs),
      removals: new Backoff(clock, Math.max(10_000, o.nodeGraceMs ?? 40_000), 1_800_000),
      pendingTimeoutMs: o.pendingTimeoutMs ?? 300_000,
      touchConfig: (name) => this.queue.add(`config:${name}`),
    };
  }

  /** True once the caches have been listed and the work queue runs, until `stop()`. */
  get reconciling(): boolean {
    return this.started && !this.stopped;
  }

  /** Starts the caches; the work queue runs once they have all been listed (see `ready`). */
  start(): void {
    for (const i of this.informers) i.start();
    const { configs, devices } = this.ctx.caches;
    const brokerCaches = this.brokers.flatMap((b) => [b.pods, b.jobs, b.services]);
    // Nodes are not waited for: without them (no RBAC to list Nodes) no node is judged lost.
    this.ready = Promise.all([configs, devices, ...brokerCaches].map((i) => i.synced)).then(() => {
      if (this.stopped) return;
      this.started = true;
      const brokers = this.brokers.map((b) => `${b.namespace} (${b.level})`);
      this.logger.info({ namespace: this.o.namespace, brokers }, 'caches synced; reconciling');
      this.queue.start((key) => this.handle(key));
      this.enqueueAll();
      this.resyncTimer = setInterval(() => this.enqueueAll(), this.o.resyncMs ?? 120_000);
      this.resyncTimer.unref();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    for (const i of this.informers) i.stop();
    this.rest.close();
    await this.queue.stop();
  }

  private async handle(key: string): Promise<Outcome> {
    const at = key.indexOf(':');
    const [kind, name] = [key.slice(0, at), key.slice(at + 1)];
    if (kind === 'device') return reconcileDevice(this.ctx, name);
    await reconcileConfig(this.ctx, name);
    return undefined;
  }

  // ------------------------------------------------------------------------------------- event routing

  private device(name: string | undefined): void {
    if (name) this.queue.add(`device:${name}`);
  }

  private config(name: string | undefined): void {
    if (name) this.queue.add(`config:${name}`);
  }

  private route(plural: Plural, e: InformerEvent): void {
    const o = e.object;
    if (plural === 'nodes') {
      this.nodeChanged(e);
      return;
    }
    if (plural === 'discoveryconfigs') {
      this.config(o.metadata.name);
      // Its devices only when its spec changed (not on status writes, ours or the agents').
      if (e.old && stableJson(e.old.spec) === stableJson(o.spec)) return;
      for (const d of this.ctx.caches.devices.known.values()) {
        if (deviceView(d)?.configName === o.metadata.name) this.device(d.metadata.name);
      }
      return;
    }
    if (plural === 'devices') {
      this.device(o.metadata.name);
      this.config(deviceView(o)?.configName);
      if (e.old) this.config(deviceView(e.old)?.configName);
      return;
    }
    this.owned(o);
  }

  /** A broker Pod, Job or Service changed: its Device (or its config, for the config's Service). */
  private owned(o: KubeObject): void {
    const owner = brokerOwnerOf(o);
    if (owner?.kind === 'DiscoveryConfig') {
      this.config(owner.name);
      return;
    }
    this.device(owner?.name);
    const known = owner ? deviceView(this.ctx.caches.devices.known.get(owner.name)) : undefined;
    this.config(known?.configName);
  }

  private nodeChanged(e: InformerEvent): void {
    const name = e.object.metadata.name;
    this.ctx.nodeHealth.observe(e.type, name);
    for (const d of this.ctx.caches.devices.known.values()) {
      const view = deviceView(d);
      if (view?.nodes.includes(name)) {
        this.device(view.name);
        this.config(view.configName);
      }
    }
    for (const pod of this.brokers.flatMap((b) => [...b.pods.known.values()])) {
      if (podNode(pod) === name) this.owned(pod);
    }
  }

  /** After a (re-)list: everything again, since the watch may have missed changes. */
  private listed(plural: Plural): void {
    if (this.started) this.logger.debug({ resource: plural }, 're-listed; reconciling everything');
    if (this.started) this.enqueueAll();
  }

  private enqueueAll(): void {
    const { configs, devices } = this.ctx.caches;
    for (const c of configs.known.values()) this.config(c.metadata.name);
    for (const d of devices.known.values()) this.route('devices', { type: 'MODIFIED', object: d });
    // Broker objects whose Device or config is gone (deleted while this controller was not watching).
    for (const cache of this.brokers.flatMap((b) => [b.pods, b.jobs, b.services])) {
      for (const o of cache.known.values()) this.owned(o);
    }
  }
}
