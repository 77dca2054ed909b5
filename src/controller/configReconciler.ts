import type { KubeObject } from '../kubeclient/informer.js';
import {
  isConflict,
  isForbidden,
  isNotFound,
  isTransient,
  KubeApiError,
} from '../kubeclient/kubeApiError.js';
import type { Condition } from '../model/resources.js';
import { errorMessage } from '../util/errors.js';
import { stableJson } from '../util/json.js';
import {
  type BrokerPlan,
  brokerOwnerOf,
  brokerPlan,
  configService,
  configServiceName,
  jobName,
  podName,
} from './brokerSpec.js';
import { type BrokerSpace, brokerSpace, type ControllerContext, type Problem } from './context.js';
import { type ConfigView, configView, deviceView, jobActive, jobFinished, podPhase } from './objects.js';
import { syncService } from './services.js';

export const BROKERS_READY = 'BrokersReady';
const CONFLICT_RETRIES = 4;

type Brokers = { wanted: number; running: number };
type StatusCondition = Condition & { observedGeneration?: number };
type Ours = { brokers: Brokers; condition: Omit<StatusCondition, 'lastTransitionTime'> } | undefined;

/**
 * One pass over a DiscoveryConfig: its Service for all of its brokers, and its status: `brokers {wanted,
 * running}` and the `BrokersReady` condition, written through `/status` as a JSON merge patch conditional
 * on the resourceVersion (409 → re-read and again), only when they changed, every other condition (the
 * agents' `Valid`) kept as it is. A config without broker fields gets neither (they are removed if it had).
 */
export async function reconcileConfig(ctx: ControllerContext, name: string): Promise<void> {
  const config = configView(ctx.caches.configs.known.get(name));
  const plan: BrokerPlan = config ? brokerPlan(config) : { kind: 'none' };
  const placed =
    config && plan.kind !== 'none' && plan.kind !== 'invalid' ? brokerSpace(ctx, config, plan) : undefined;
  const home = placed && 'writer' in placed ? placed : undefined;
  let serviceProblem: Problem | undefined;
  for (const space of ctx.brokers) {
    // An invalid spec leaves the Service as it is, as it leaves the brokers.
    if (plan.kind === 'invalid' && config) continue;
    const wanted =
      space === home && plan.kind !== 'none' && plan.kind !== 'invalid' ? plan.configService : undefined;
    const problem = await configServiceIn(
      ctx,
      space,
      name,
      config && wanted && configService(config, wanted, space.namespace),
    );
    serviceProblem ??= problem;
  }
  if (!config) {
    ctx.problems.forgetConfig(name);
    return;
  }
  await writeStatus(ctx, config, wantedStatus(ctx, config, plan, serviceProblem));
}

/** The config's Service in one broker namespace made to match `desired` (absent: none there). */
async function configServiceIn(
  ctx: ControllerContext,
  space: BrokerSpace,
  name: string,
  desired: ReturnType<typeof configService> | undefined,
): Promise<Problem | undefined> {
  const svcName = configServiceName(name);
  const current = space.services.known.get(svcName);
  const owner = current && brokerOwnerOf(current);
  const ours =
    owner?.kind === 'DiscoveryConfig' && owner.namespace === ctx.namespace && owner.name === name
      ? current
      : undefined;
  if (current && !ours) {
    if (!desired) return undefined;
    return {
      reason: 'NameConflict',
      message: `a Service named ${svcName} exists that leafbridge does not manage`,
    };
  }
  try {
    return await syncService(ctx, space, svcName, ours, desired, { config: name });
  } catch (err) {
    // Requeued (the work queue backs off): no answer, 429, 5xx, a conflict, or no API answer at all.
    if (!(err instanceof KubeApiError) || isTransient(err) || isConflict(err)) throw err;
    return { reason: isForbidden(err) ? 'Forbidden' : 'BrokerRejected', message: errorMessage(err) };
  }
}

/** What the status should say, from the caches. */
function wantedStatus(
  ctx: ControllerContext,
  config: ConfigView,
  plan: BrokerPlan,
  serviceProblem?: Problem,
): Ours {
  if (plan.kind === 'none') return undefined;
  let wanted = 0;
  let running = 0;
  for (const o of ctx.caches.devices.known.values()) {
    const d = deviceView(o);
    if (!d || d.configName !== config.name) continue;
    if (!d.online || !d.nodes.some((n) => !ctx.nodeHealth.lost(n))) continue;
    wanted++;
    if (brokerRunning(ctx, d.name, d.uid)) running++;
  }
  const brokers = { wanted, running };
  const noun = plan.kind === 'job' ? 'broker jobs running or complete' : 'broker pods running';
  const problems = ctx.problems.of(config.name);
  if (serviceProblem) problems.unshift([`service ${configServiceName(config.name)}`, serviceProblem]);
  const condition = (status: 'True' | 'False', reason: string, message: string) => ({
    brokers,
    condition: {
      type: BROKERS_READY,
      status,
      reason,
      message,
      ...(config.generation !== undefined ? { observedGeneration: config.generation } : {}),
    },
  });
  if (plan.kind === 'invalid') return condition('False', 'InvalidBrokerSpec', plan.message);
  const [first, ...rest] = problems;
  if (first) {
    const more = rest.length > 0 ? ` (and ${rest.length} more)` : '';
    return condition('False', first[1].reason, `${first[0]}: ${first[1].message}${more}`);
  }
  const message = `${running} of ${wanted} ${noun}`;
  return running >= wanted
    ? condition('True', 'BrokersRunning', message)
    : condition('False', 'BrokersNotRunning', message);
}

/** Whether the device's broker runs: its Pod Running, or its Job active or Complete, in any broker namespace. */
function brokerRunning(ctx: ControllerContext, device: string, uid: string): boolean {
  const mine = (o: KubeObject | undefined): o is KubeObject =>
    o !== undefined && !o.metadata.deletionTimestamp && brokerOwnerOf(o)?.uid === uid;
  return ctx.brokers.some((space) => {
    const pod = space.pods.known.get(podName(device));
    if (mine(pod) && podPhase(pod) === 'Running') return true;
    const job = space.jobs.known.get(jobName(device));
    return mine(job) && (jobActive(job) || jobFinished(job) === 'Complete');
  });
}

async function writeStatus(ctx: ControllerContext, config: ConfigView, ours: Ours): Promise<void> {
  let cur: ConfigView | undefined = config;
  for (let attempt = 0; cur; attempt++) {
    const patch = statusPatch(cur, ours, new Date(ctx.clock.now()).toISOString());
    if (!patch) return;
    try {
      await ctx.writer.mergePatch('discoveryconfigs', cur.name, patch, true);
      ctx.logger.debug(
        { config: cur.name, brokers: ours?.brokers, ready: ours?.condition.status },
        'config status written',
      );
      return;
    } catch (err) {
      if (isNotFound(err)) return; // deleted meanwhile
      if (!isConflict(err) || attempt >= CONFLICT_RETRIES) throw err;
      cur = configView(await ctx.writer.get('discoveryconfigs', cur.name));
    }
  }
}

/** The merge patch from the stored status to ours, or undefined when nothing of ours differs. */
function statusPatch(config: ConfigView, ours: Ours, now: string): Record<string, unknown> | undefined {
  const old: StatusCondition | undefined = config.conditions.find((c) => c.type === BROKERS_READY);
  const others = config.conditions.filter((c) => c.type !== BROKERS_READY);
  const storedBrokers = config.status.brokers;
  if (!ours) {
    if (!old && storedBrokers === undefined) return undefined;
    return status(config, { brokers: null, conditions: others });
  }
  const c = ours.condition;
  const same =
    old !== undefined &&
    stableJson([old.status, old.reason, old.message, old.observedGeneration]) ===
      stableJson([c.status, c.reason, c.message, c.observedGeneration]);
  if (same && stableJson(storedBrokers) === stableJson(ours.brokers)) return undefined;
  const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : now;
  return status(config, { brokers: ours.brokers, conditions: [...others, { ...c, lastTransitionTime }] });
}

function status(config: ConfigView, s: Record<string, unknown>): Record<string, unknown> {
  return { metadata: { resourceVersion: config.resourceVersion }, status: s };
}
