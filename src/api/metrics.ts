import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/** What the metrics read at scrape time; each module keeps its own counters. */
export interface MetricSources {
  outbox?: { messages: number; bytes: number; dropped: { oldest: number; rejected: number } };
  bridge?: { connected: boolean; forwarded: number; rejected: number; connects: number };
  received: Record<string, number>;
  brokerClients: () => number;
  refused: Record<string, number>;
  /** Devices whose latest change the Device store has not yet confirmed written (0 for the local store). */
  devicesPending?: () => number;
}

/** One Prometheus registry per agent (no global default registry), read from the sources at scrape. */
export function createMetrics(src: MetricSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'leafbridge_process_' });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge(
    'leafbridge_outbox_messages',
    'messages in the outbox waiting for the upstream',
    () => src.outbox?.messages ?? 0,
  );
  gauge('leafbridge_outbox_bytes', 'bytes in the outbox', () => src.outbox?.bytes ?? 0);
  gauge('leafbridge_upstream_connected', '1 while the upstream broker is connected', () =>
    src.bridge?.connected ? 1 : 0,
  );
  gauge('leafbridge_broker_clients', 'clients connected to the edge broker', () => src.brokerClients());
  gauge(
    'leafbridge_device_writes_pending',
    'Devices with a change not yet written to the Kubernetes API (queued through an outage, or coalescing)',
    () => src.devicesPending?.() ?? 0,
  );
  counterFrom(
    registry,
    'leafbridge_outbox_dropped_total',
    'messages dropped by the outbox overflow policy or refused upstream',
    'reason',
    () => ({
      'drop-oldest': src.outbox?.dropped.oldest ?? 0,
      'reject-new': src.outbox?.dropped.rejected ?? 0,
      'upstream-rejected': src.bridge?.rejected ?? 0,
    }),
  );
  counterFrom(
    registry,
    'leafbridge_messages_received_total',
    'device messages accepted by the edge broker',
    'kind',
    () => src.received,
  );
  counterFrom(
    registry,
    'leafbridge_messages_forwarded_total',
    'messages acknowledged by the upstream broker',
    undefined,
    () => ({
      '': src.bridge?.forwarded ?? 0,
    }),
  );
  counterFrom(
    registry,
    'leafbridge_upstream_connects_total',
    'successful upstream connections',
    undefined,
    () => ({
      '': src.bridge?.connects ?? 0,
    }),
  );
  counterFrom(
    registry,
    'leafbridge_broker_refused_total',
    'CONNECT, PUBLISH and SUBSCRIBE refusals',
    'reason',
    () => src.refused,
  );
  return registry;
}

/** A counter whose values are read from a module's own monotonic counts at scrape time. */
function counterFrom(
  registry: Registry,
  name: string,
  help: string,
  label: string | undefined,
  read: () => Record<string, number>,
): void {
  new Counter({
    name,
    help,
    labelNames: label ? [label] : [],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, n] of Object.entries(read())) {
        if (label) this.inc({ [label]: value }, n);
        else this.inc(n);
      }
    },
  });
}
