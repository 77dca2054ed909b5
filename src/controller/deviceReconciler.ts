import type { KubeObject } from '../kubeclient/informer.js';
import { isConflict, isForbidden, isTransient, KubeApiError } from '../kubeclient/kubeApiError.js';
import type { ServicePorts } from '../model/resources.js';
import { errorMessage } from '../util/errors.js';
import {
  ANNOTATION_NODES,
  ANNOTATION_SPEC_HASH,
  type BrokerPlan,
  brokerOwnerOf,
  brokerPlan,
  deviceService,
  deviceServiceName,
  jobName,
  podName,
  renderJob,
  renderPod,
} from './brokerSpec.js';
import { type BrokerSpace, brokerSpace, type ControllerContext, type Problem } from './context.js';
import { markOffline, removeNodes, splitNodes } from './deviceNodes.js';
import {
  configView,
  type DeviceView,
  deviceView,
  jobFinished,
  podNode,
  podPhase,
  timeOf,
} from './objects.js';
import { syncService } from './services.js';
import type { Outcome } from './workQueue.js';

type Broker = Extract<BrokerPlan, { kind: 'pod' | 'job' }>;

/** One pass over a Device: what the passes over its parts need to know. */
interface Pass {
  device: DeviceView;
  /** Nodes that see the device and are not lost. */
  usable: string[];
  /** Online on a usable node: a broker is wanted (an offline device keeps what it has, see below). */
  online: boolean;
  deadlines: number[];
}

/**
 * Level-triggered pass over one Device: lost nodes out of its `spec.nodes`, then its broker Pod or Job and
 * its Service made to match its DiscoveryConfig. A device that goes offline keeps its broker (the agents
 * keep an offline Device for a grace period so that a flapping device does not lose its pods; its Pod is
 * deleted with the Device); nothing new is made for it until it is back. A config whose broker fields are
 * invalid leaves the existing brokers alone (its status says why), as a rejected edit would.
 */
export async function reconcileDevice(ctx: ControllerContext, name: string): Promise<Outcome> {
  const device = deviceView(ctx.caches.devices.known.get(name));
  if (!device) return removeAll(ctx, name);
  const split = splitNodes(ctx, device);
  if (split.remove.length > 0) {
    await removeNodes(ctx, device, split.remove);
    return undefined; // the watch brings the new version, and another pass
  }
  if (device.nodes.length === 0 && device.online) await markOffline(ctx, device.raw, []);
  const config = configView(ctx.caches.configs.known.get(device.configName));
  const plan: BrokerPlan = config ? brokerPlan(config) : { kind: 'none' };
  const pass: Pass = {
    device,
    usable: split.usable,
    online: device.online && split.usable.length > 0,
    deadlines: split.deadlines,
  };
  if (plan.kind !== 'invalid') {
    // The broker goes to the namespace of the Pod Security level it needs, if allowed; any elsewhere goes.
    const placed = config && plan.kind !== 'none' ? brokerSpace(ctx, config, plan) : undefined;
    const home = placed && 'writer' in placed ? placed : undefined;
    const problems: (Problem | undefined)[] = [placed && !home ? (placed as Problem) : undefined];
    for (const space of ctx.brokers) {
      const broker = space === home && plan.kind !== 'none' ? plan : undefined;
      problems.push(
        await attempt(() => syncPod(ctx, space, pass, broker?.kind === 'pod' ? broker : undefined)),
        await attempt(() => syncJob(ctx, space, pass, broker?.kind === 'job' ? broker : undefined)),
        await attempt(() => syncDeviceService(ctx, space, device, broker?.deviceService)),
      );
    }
    const problem = problems.find((p) => p !== undefined);
    if (ctx.problems.set(device.configName, name, problem)) ctx.touchConfig(device.configName);
  }
  return due(ctx, pass.deadlines);
}

/** Runs one step; a refusal that waiting will not cure (422, 403, a name taken) becomes the problem. */
async function attempt(step: () => Promise<Problem | undefined>): Promise<Problem | undefined> {
  try {
    return await step();
  } catch (err) {
    // Requeued (the work queue backs off): no answer, 429, 5xx, a conflict, or no API answer at all.
    if (!(err instanceof KubeApiError) || isTransient(err) || isConflict(err)) throw err;
    return { reason: isForbidden(err) ? 'Forbidden' : 'BrokerRejected', message: errorMessage(err) };
  }
}

function due(ctx: ControllerContext, deadlines: number[]): Outcome {
  if (deadlines.length === 0) return undefined;
  return { requeueAfterMs: Math.max(0, Math.min(...deadlines) - ctx.clock.now()) };
}

/**
 * The Device is gone: its broker objects go too. Nothing else deletes them: they live in a broker namespace,
 * where no owner reference to the Device can hold. Also for those left while the controller was down.
 */
async function removeAll(ctx: ControllerContext, name: string): Promise<Outcome> {
  for (const space of ctx.brokers) {
    const { pods, jobs, services, writer, namespace } = space;
    for (const [cache, objectName, plural] of [
      [pods, podName(name), 'pods'],
      [jobs, jobName(name), 'jobs'],
      [services, deviceServiceName(name), 'services'],
    ] as const) {
      const o = cache.known.get(objectName);
      if (o && ownedBy(ctx, o, name) && !o.metadata.deletionTimestamp) {
        await writer.delete(plural, o);
        ctx.logger.info(
          { device: name, namespace, [plural]: objectName },
          'device gone; broker object deleted',
        );
      }
    }
  }
  ctx.restarts.reset(name);
  ctx.removals.forget(`${name}/`);
  for (const config of ctx.problems.forgetDevice(name)) ctx.touchConfig(config);
  return undefined;
}

/** Whether `o` was made for the Device `device` of our namespace (and, with `uid`, for that very object). */
function ownedBy(ctx: ControllerContext, o: KubeObject, device: string, uid?: string): boolean {
  const owner = brokerOwnerOf(o);
  return (
    owner?.kind === 'Device' &&
    owner.namespace === ctx.namespace &&
    owner.name === device &&
    (uid === undefined || owner.uid === uid)
  );
}

// ------------------------------------------------------------------------------------------------ Pod

async function syncPod(
  ctx: ControllerContext,
  space: BrokerSpace,
  pass: Pass,
  plan: Broker | undefined,
): Promise<Problem | undefined> {
  const { device } = pass;
  const { writer, namespace } = space;
  let pod = space.pods.known.get(podName(device.name));
  if (pod && !ownedBy(ctx, pod, device.name)) return plan ? nameTaken('Pod', pod) : undefined;
  if (pod?.metadata.deletionTimestamp) {
    // Terminating: wait for its DELETED event; but a node that is gone never confirms a graceful deletion.
    if (lostNode(ctx, pod)) await writer.delete('pods', pod, { force: true });
    else pass.deadlines.push(ctx.clock.now() + 5_000);
    return undefined;
  }
  if (pod && (!plan || !ownedBy(ctx, pod, device.name, device.uid))) {
    await writer.delete('pods', pod); // no broker wanted here, or left over from an earlier Device of that name
    ctx.logger.info({ device: device.name, namespace, pod: pod.metadata.name }, 'broker pod deleted');
    pod = undefined;
  }
  if (!plan) return undefined;
  if (pod) {
    const why = podReplacement(ctx, pass, pod, plan);
    if (!why) return undefined;
    await writer.delete('pods', pod, { force: lostNode(ctx, pod) });
    ctx.restarts.did(device.name);
    ctx.logger.info({ device: device.name, namespace, pod: pod.metadata.name, why }, 'broker pod replaced');
  }
  if (!pass.online) return undefined;
  return create(ctx, space, 'pods', renderPod(device, plan, pass.usable, namespace), pass);
}

/** Why `pod` must be replaced now, if it must; otherwise notes when to look again. */
function podReplacement(
  ctx: ControllerContext,
  pass: Pass,
  pod: KubeObject,
  plan: Broker,
): string | undefined {
  if (!pass.online) return undefined; // offline: keep it until the device is back (or deleted)
  if (pod.metadata.annotations?.[ANNOTATION_SPEC_HASH] !== plan.hash) return 'the broker spec changed';
  const node = podNode(pod);
  if (node && !pass.usable.includes(node)) return `its node ${node} no longer sees the device`;
  if (!node && !allowedNodes(pod).some((n) => pass.usable.includes(n))) {
    return 'none of the nodes it may run on sees the device now';
  }
  const phase = podPhase(pod);
  const now = ctx.clock.now();
  if (phase === 'Running') ctx.restarts.reset(pass.device.name);
  let why: string | undefined;
  if (phase === 'Failed' || phase === 'Succeeded') why = `it ended (${phase})`;
  else if (phase === 'Pending') {
    const since = Math.max(timeOf(pod.metadata.creationTimestamp) || 0, pass.device.lastSeen || 0);
    const deadline = since + ctx.pendingTimeoutMs;
    if (now < deadline) pass.deadlines.push(deadline);
    else why = `it has been Pending for over ${Math.round(ctx.pendingTimeoutMs / 1000)} s`;
  }
  if (!why) return undefined;
  const wait = ctx.restarts.wait(pass.device.name);
  if (wait > 0) {
    pass.deadlines.push(now + wait);
    return undefined;
  }
  return why;
}

function allowedNodes(o: KubeObject): string[] {
  return (o.metadata.annotations?.[ANNOTATION_NODES] ?? '').split(',').filter((n) => n !== '');
}

function lostNode(ctx: ControllerContext, pod: KubeObject): boolean {
  const node = podNode(pod);
  return node !== undefined && ctx.nodeHealth.lost(node);
}

// ------------------------------------------------------------------------------------------------ Job

/**
 * The broker Job follows Job semantics: the Job controller retries its pods (backoffLimit); a Job that
 * finished, Complete or Failed, is left as it is, and made again only when the broker spec changes or the
 * Device is a new object. An unfinished Job none of whose nodes sees the device any more is made again.
 */
async function syncJob(
  ctx: ControllerContext,
  space: BrokerSpace,
  pass: Pass,
  plan: Broker | undefined,
): Promise<Problem | undefined> {
  const { device } = pass;
  const { writer, namespace } = space;
  let job = space.jobs.known.get(jobName(device.name));
  if (job && !ownedBy(ctx, job, device.name)) return plan ? nameTaken('Job', job) : undefined;
  if (job?.metadata.deletionTimestamp) {
    pass.deadlines.push(ctx.clock.now() + 5_000);
    return undefined;
  }
  if (job && (!plan || !ownedBy(ctx, job, device.name, device.uid))) {
    await writer.delete('jobs', job);
    ctx.logger.info({ device: device.name, namespace, job: job.metadata.name }, 'broker job deleted');
    job = undefined;
  }
  if (!plan || !pass.online) return undefined;
  if (job) {
    const why =
      job.metadata.annotations?.[ANNOTATION_SPEC_HASH] !== plan.hash
        ? 'the broker spec changed'
        : !jobFinished(job) && !allowedNodes(job).some((n) => pass.usable.includes(n))
          ? 'none of its nodes sees the device now'
          : undefined;
    if (!why) return undefined;
    await writer.delete('jobs', job);
    ctx.logger.info({ device: device.name, namespace, job: job.metadata.name, why }, 'broker job replaced');
  }
  return create(ctx, space, 'jobs', renderJob(device, plan, pass.usable, namespace), pass);
}

// -------------------------------------------------------------------------------------------- Service

function syncDeviceService(
  ctx: ControllerContext,
  space: BrokerSpace,
  device: DeviceView,
  ports: ServicePorts | undefined,
): Promise<Problem | undefined> {
  const name = deviceServiceName(device.name);
  const current = space.services.known.get(name);
  if (current && !ownedBy(ctx, current, device.name))
    return Promise.resolve(ports ? nameTaken('Service', current) : undefined);
  const desired = ports && deviceService(device, ports, space.namespace);
  return syncService(ctx, space, name, current, desired, { device: device.name });
}

// ----------------------------------------------------------------------------------------------- shared

async function create(
  ctx: ControllerContext,
  space: BrokerSpace,
  plural: 'pods' | 'jobs',
  body: KubeObject,
  pass: Pass,
): Promise<Problem | undefined> {
  const created = await space.writer.create(plural, body);
  const name = body.metadata.name;
  if (created !== 'exists') {
    ctx.logger.info(
      { device: pass.device.name, namespace: space.namespace, [plural]: name, nodes: pass.usable },
      'broker created',
    );
    return undefined;
  }
  // Not in our cache yet (it soon will be), still terminating, or someone else's: look.
  const found = await space.writer.get(plural, name);
  if (found && !ownedBy(ctx, found, pass.device.name))
    return nameTaken(plural === 'pods' ? 'Pod' : 'Job', found);
  pass.deadlines.push(ctx.clock.now() + 5_000);
  return undefined;
}

export function nameTaken(kind: string, o: KubeObject): Problem {
  return {
    reason: 'NameConflict',
    message: `a ${kind} named ${o.metadata.name} exists that leafbridge does not manage`,
  };
}
