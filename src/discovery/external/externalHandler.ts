import { stringify } from 'yaml';
import type { DiscoveredDevice, DiscoveryContext, DiscoveryHandler } from '../../model/handler.js';
import { backoffDelay, sleep } from '../../util/clock.js';
import { errorMessage } from '../../util/errors.js';
import { type CallLimits, discoverCall } from './discoverCall.js';
import { differs, type HandlerRegistrations } from './registrations.js';
import { ExternalDetailsSchema } from './schema.js';

export interface ExternalHandlerOptions extends CallLimits {
  registrations: HandlerRegistrations;
  /** Shown while no handler has registered under the name. */
  socketPath: string;
}

/** An Akri discovery-handler's YAML `discovery_details` for a config's details. */
export function discoveryDetailsYaml(details: Record<string, unknown>): string {
  const keys = Object.keys(details);
  if (keys.length === 1 && typeof details.discoveryDetails === 'string') return details.discoveryDetails;
  return keys.length === 0 ? '' : stringify(details);
}

/**
 * The handler DiscoveryConfigs name to use the external handler registered as `name`. It waits for the
 * registration, calls Discover, and yields what the handler streams. When the call fails (the handler died,
 * hung, or sent what cannot be read) it yields an empty list, so the devices go offline and are deleted after
 * the grace period, then calls again with backoff, or at once when the handler registers again. A newer
 * registration elsewhere replaces the call in progress.
 */
export function externalHandler(
  name: string,
  o: ExternalHandlerOptions,
): DiscoveryHandler<typeof ExternalDetailsSchema> {
  return {
    name,
    detailsSchema: ExternalDetailsSchema,
    get shared() {
      return o.registrations.get(name)?.shared ?? false;
    },
    discover: (details, ctx) => discoverLoop(name, discoveryDetailsYaml(details), o, ctx),
  };
}

async function* discoverLoop(
  name: string,
  yaml: string,
  o: ExternalHandlerOptions,
  ctx: DiscoveryContext,
): AsyncGenerator<DiscoveredDevice[]> {
  const { signal, logger } = ctx;
  let failures = 0;
  let shown = false;
  let seq = 0;
  while (!signal.aborted) {
    let reg = o.registrations.get(name);
    if (!reg) {
      ctx.report?.(
        'False',
        'NotRegistered',
        `waiting for a handler named ${name} to register on ${o.socketPath}`,
      );
      reg = await o.registrations.next(name, seq, signal);
      if (!reg) return;
    }
    seq = reg.seq;
    const call = new AbortController();
    const onAbort = () => call.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const current = reg;
    const unwatch = o.registrations.watch(name, (next) => {
      if (differs(current, next)) call.abort();
    });
    try {
      for await (const list of discoverCall(reg, yaml, o, logger, call.signal)) {
        failures = 0;
        shown = list.length > 0;
        yield list;
      }
      if (signal.aborted) return;
      logger.info({ from: reg.endpoint }, 'handler registered again elsewhere; calling the new endpoint');
    } catch (err) {
      if (signal.aborted) return;
      const delay = backoffDelay(failures++, 500, 30_000);
      logger.error(
        { endpoint: reg.endpoint, err: errorMessage(err), retryInMs: delay },
        'external handler failed',
      );
      if (shown) {
        shown = false;
        yield []; // what a failed handler reported is no longer known to be there
      }
      ctx.report?.('False', 'HandlerFailed', errorMessage(err));
      await untilRetry(o.registrations, name, seq, delay, signal);
    } finally {
      unwatch();
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/** Waits `delay`, or less when `name` registers again after `seq`, or until `signal` aborts. */
async function untilRetry(
  registrations: HandlerRegistrations,
  name: string,
  seq: number,
  delay: number,
  signal: AbortSignal,
): Promise<void> {
  const wait = new AbortController();
  const onAbort = () => wait.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.race([sleep(delay, wait.signal), registrations.next(name, seq, wait.signal)]);
  } finally {
    wait.abort();
    signal.removeEventListener('abort', onAbort);
  }
}
