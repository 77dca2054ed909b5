import * as grpc from '@grpc/grpc-js';
import type { DiscoveredDevice } from '../../model/handler.js';
import { sleep } from '../../util/clock.js';
import { LeafbridgeError } from '../../util/errors.js';
import type { Logger } from '../../util/logger.js';
import {
  type AkriDevice,
  akriProto,
  type DiscoverResponse,
  endpointTarget,
  toDiscovered,
} from './protocol.js';
import type { Registration } from './registrations.js';

/** What bounds one handler's Discover call. */
export interface CallLimits {
  firstListTimeoutMs: number;
  minListIntervalMs: number;
  maxDevices: number;
  maxMessageBytes: number;
}

const MAX_ID_LENGTH = 256;
const MAX_PROPERTIES = 256;

/**
 * One Discover call on a registered handler: yields its device lists, converted and checked, until the
 * call fails, ends or `signal` aborts (then it throws, or returns on abort). Bounded against a hostile
 * handler: no first list within `firstListTimeoutMs` fails the call; messages above `maxMessageBytes` fail
 * it (gRPC refuses them); a list longer than `maxDevices` is refused whole; lists sent faster than
 * `minListIntervalMs` are coalesced, only the latest applied, so memory holds at most one pending list.
 */
export async function* discoverCall(
  reg: Registration,
  discoveryDetails: string,
  limits: CallLimits,
  logger: Logger,
  signal: AbortSignal,
): AsyncGenerator<DiscoveredDevice[]> {
  const { Discover } = akriProto().DiscoveryHandler;
  const client = new grpc.Client(
    endpointTarget({ endpoint: reg.endpoint, endpoint_type: reg.endpointType }),
    grpc.credentials.createInsecure(),
    {
      'grpc.max_receive_message_length': limits.maxMessageBytes,
    },
  );
  const call = client.makeServerStreamRequest(
    Discover.path,
    Discover.requestSerialize,
    Discover.responseDeserialize,
    {
      discovery_details: discoveryDetails,
      discovery_properties: {},
    },
  );
  let pending: DiscoverResponse | undefined;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const poke = () => {
    wake?.();
    wake = undefined;
  };
  const cancel = () => call.cancel();
  signal.addEventListener('abort', cancel, { once: true });
  const firstList = setTimeout(() => {
    failed = new LeafbridgeError(
      'AKRI_HANDLER_SILENT',
      `no device list within ${limits.firstListTimeoutMs} ms`,
    );
    call.cancel();
    poke();
  }, limits.firstListTimeoutMs);
  call.on('data', (response: DiscoverResponse) => {
    clearTimeout(firstList);
    pending = response;
    poke();
  });
  call.on('error', (err: grpc.ServiceError) => {
    failed ??= new LeafbridgeError('AKRI_DISCOVER_FAILED', `Discover failed: ${err.details || err.message}`, {
      cause: err,
    });
    poke();
  });
  call.on('end', () => {
    failed ??= new LeafbridgeError('AKRI_DISCOVER_ENDED', 'the handler ended its Discover stream');
    poke();
  });
  try {
    for (;;) {
      if (signal.aborted) return;
      if (pending) {
        const response = pending;
        pending = undefined;
        const list = checkedList(response, limits.maxDevices, logger);
        if (list) yield list;
        await sleep(limits.minListIntervalMs, signal);
        continue;
      }
      if (failed) throw failed;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    clearTimeout(firstList);
    signal.removeEventListener('abort', cancel);
    call.cancel();
    client.close();
  }
}

/** The response's usable devices, or undefined when the list is refused whole (too long). */
function checkedList(
  response: DiscoverResponse,
  maxDevices: number,
  logger: Logger,
): DiscoveredDevice[] | undefined {
  if (response.devices.length > maxDevices) {
    logger.error(
      { devices: response.devices.length, maxDevices },
      'handler sent too many devices; list refused, the previous one stays',
    );
    return undefined;
  }
  const out: DiscoveredDevice[] = [];
  const ids = new Set<string>();
  let unusable = 0;
  let firstProblem: string | undefined;
  for (const d of response.devices) {
    const found = deviceProblem(d) ?? (ids.has(d.id) ? 'duplicate id' : toDiscovered(d));
    if (typeof found === 'string') {
      unusable++;
      firstProblem ??= `${JSON.stringify(d.id.slice(0, 80))}: ${found}`;
      continue;
    }
    ids.add(found.id);
    out.push(found);
  }
  if (unusable > 0)
    logger.warn({ unusable, example: firstProblem }, 'handler sent unusable devices; ignored');
  return out;
}

function deviceProblem(d: AkriDevice): string | undefined {
  if (d.id.length === 0) return 'no id';
  if (d.id.length > MAX_ID_LENGTH) return `id longer than ${MAX_ID_LENGTH}`;
  if (Object.keys(d.properties).length > MAX_PROPERTIES) return `more than ${MAX_PROPERTIES} properties`;
  return undefined;
}
