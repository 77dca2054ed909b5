import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';

/** What `leafbridge hub` is given. Only `brokerUrl`, `kubeConfig` and `namespace` are required. */
export interface HubOptions {
  /** The cloud broker the edges bridge to: mqtt:// or mqtts://, MQTT 5. */
  brokerUrl: string;
  username?: string;
  password?: string;
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; rejectUnauthorized?: boolean };
  /**
   * MQTT client id; default `leafbridge-hub-{hostname}` (in a pod: its name). It names the replica's persistent
   * session, so it must stay the same across restarts of one replica and differ between replicas.
   */
  clientId?: string;
  /**
   * Seconds the broker keeps this replica's session (and the messages the group hands it) while it is away.
   * Default 600; 0 gives a clean session that ends with each connection.
   */
  sessionExpiryS?: number;
  /** The edges' `upstream.prefix` (one or more topic levels). Default `leafbridge`. */
  prefix?: string;
  /** The MQTT 5 shared-subscription group every replica joins. Default `leafbridge-hub`. */
  group?: string;
  kubeConfig: KubeConfig;
  namespace: string;
  /** At most one status write per Device per interval. Default 1000 ms. */
  intervalMs?: number;
  logger: Logger;
  clock?: Clock;
  /** JSON lines of every telemetry message (see telemetrySink.ts); off when absent. */
  telemetry?: TelemetrySinkOptions;
  /** Payloads above this are dropped and counted. Default 256 KiB. */
  maxPayloadBytes?: number;
  /** How long, and how much, to keep the newest message of a device the hub has no Device for yet. */
  hold?: { ms: number; maxBytes: number };
  /** Status writes in flight at once, across Devices. Default 32. */
  concurrency?: number;
  /** Retry delays for status writes the API server refused (5xx, 429). Default 500 ms … 30 s. */
  backoff?: { baseMs: number; maxMs: number };
  /** Delays of the probe that asks whether an unreachable API server is back. Default 250 ms … 5 s. */
  probe?: { baseMs: number; maxMs: number };
  /** Reconnect delay to the broker. Default 1000 ms. */
  reconnectMs?: number;
}

export interface TelemetrySinkOptions {
  /** The file JSON lines are appended to. */
  file: string;
  /** Lines waiting to be written above this many bytes are dropped (and counted), not buffered. Default 8 MiB. */
  maxBufferedBytes?: number;
}

/**
 * A Device as the hub reads it from the API server: only the fields the hub uses are typed, and each is
 * checked before use (objects on the server are written by other programs and by people).
 */
export interface HubDevice {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec?: {
    id?: unknown;
    configName?: unknown;
    shared?: unknown;
    nodes?: unknown;
    desired?: unknown;
  };
  status?: Record<string, unknown>;
}

/** What the hub counts; read it as `hub.metrics`. Every message it receives lands in exactly one outcome. */
export interface HubMetrics {
  /** Messages received, by kind. */
  received: { reported: number; status: number; agentStatus: number; telemetry: number; other: number };
  /** Messages refused as malformed, by reason (bad topic, not JSON, no $version, too big, ...). */
  invalid: Record<string, number>;
  /** Messages whose `lb-msg-id` this replica had handled already. */
  duplicates: number;
  /** Messages older than what the hub already holds or wrote for that device (lower $version or seq). */
  stale: number;
  /** Messages for a (node, device id) no Device matched on arrival. */
  unknownDevice: number;
  /** Of those, held until the Device appeared and then applied. */
  heldApplied: number;
  /** Of those, dropped: held too long, or pushed out of the bounded hold. */
  heldDropped: number;
  /** Messages accepted into a Device's pending state (reported twin or status). */
  accepted: number;
  /** Status write requests sent to the API server (PATCH /status), and how they ended. */
  apiWrites: number;
  /** Milliseconds the status writes took, added up (mean round trip: `apiWriteMs / apiWrites`). */
  apiWriteMs: number;
  apiWriteConflicts: number;
  apiWriteFailures: number;
  /** Writes that found nothing to change on the server (another replica or an older write got there first). */
  writesSkipped: number;
  /** Reported twin versions written (one per write that changed status.reported). */
  reportedWritten: number;
  /** Devices with a change not yet written. */
  pendingDevices: number;
  /** Status writes allowed in flight now: `concurrency`, less while the hub's thread is saturated (governor.ts). */
  writeConcurrency: number;
  /** Desired twins published (and acknowledged by the broker); refused as malformed on the Device. */
  desiredPublished: number;
  desiredAcked: number;
  desiredInvalid: number;
  /** Telemetry lines written to the sink, and dropped (sink backed up or failing). */
  telemetryWritten: number;
  telemetryDropped: number;
  /** Broker connections made. */
  connects: number;
  /** Of those, connections on which the broker still held this replica's session (CONNACK session present). */
  sessionsResumed: number;
}

export function emptyMetrics(): HubMetrics {
  return {
    received: { reported: 0, status: 0, agentStatus: 0, telemetry: 0, other: 0 },
    invalid: {},
    duplicates: 0,
    stale: 0,
    unknownDevice: 0,
    heldApplied: 0,
    heldDropped: 0,
    accepted: 0,
    apiWrites: 0,
    apiWriteMs: 0,
    apiWriteConflicts: 0,
    apiWriteFailures: 0,
    writesSkipped: 0,
    reportedWritten: 0,
    pendingDevices: 0,
    writeConcurrency: 0,
    desiredPublished: 0,
    desiredAcked: 0,
    desiredInvalid: 0,
    telemetryWritten: 0,
    telemetryDropped: 0,
    connects: 0,
    sessionsResumed: 0,
  };
}
