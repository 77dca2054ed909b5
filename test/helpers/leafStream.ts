import { existsSync, readFileSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import { connect } from './mqtt.js';

export interface LeafStream {
  /** `device/n` of every message a leaf got a PUBACK for. */
  acked: Set<string>;
  done: Promise<void>;
  stop(): void;
}

/**
 * `devices` leaf clients, each publishing `perDevice` QoS 1 messages in order (`{"d":…,"n":…}`) to
 * `devices/dev-<i>/telemetry/t`, one at a time with `gapMs` between them. A leaf whose connection drops stops.
 */
export async function startLeafStream(
  url: string,
  devices: number,
  perDevice: number,
  gapMs = 0,
): Promise<LeafStream> {
  const acked = new Set<string>();
  let stopped = false;
  const clients = await Promise.all(
    Array.from({ length: devices }, (_, i) => connect(url, { clientId: `dev-${i}`, protocolVersion: 5 })),
  );
  const run = async (client: MqttClient, i: number) => {
    // A publish in flight when the connection dies never settles in mqtt.js: race it with the close.
    const closed = new Promise<false>((resolve) => client.once('close', () => resolve(false)));
    let open = true;
    void closed.then(() => {
      open = false;
    });
    for (let n = 0; n < perDevice && !stopped && open; n++) {
      const sent = client
        .publishAsync(`devices/dev-${i}/telemetry/t`, JSON.stringify({ d: i, n }), { qos: 1 })
        .then(
          () => true,
          () => false,
        );
      if (!(await Promise.race([sent, closed]))) break;
      acked.add(`dev-${i}/${n}`);
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
    client.end(true);
  };
  const done = Promise.all(clients.map((c, i) => run(c, i))).then(() => undefined);
  return {
    acked,
    done,
    stop: () => {
      stopped = true;
    },
  };
}

export interface JournalEntry {
  topic: string;
  msgId: string;
  device: string;
  n: number;
}

/** Reads what the upstream broker journaled (see aedesServer.mjs), keeping the leaf stream's telemetry. */
export function readJournal(file: string): JournalEntry[] {
  if (!existsSync(file)) return [];
  const out: JournalEntry[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [topic, msgId, payload] = line.split('\t');
    if (!topic?.includes('/telemetry/t') || !payload) continue;
    const { d, n } = JSON.parse(payload) as { d: number; n: number };
    out.push({ topic, msgId: msgId ?? '', device: `dev-${d}`, n });
  }
  return out;
}

/** Unique messages, duplicates, and devices whose first arrivals are out of order. */
export function analyse(entries: JournalEntry[]) {
  const seen = new Set<string>();
  const lastByDevice = new Map<string, number>();
  const outOfOrder: string[] = [];
  let duplicates = 0;
  for (const e of entries) {
    const key = `${e.device}/${e.n}`;
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    const last = lastByDevice.get(e.device) ?? -1;
    if (e.n < last) outOfOrder.push(`${key} after ${last}`);
    lastByDevice.set(e.device, e.n);
  }
  const distinctIds = new Set(entries.map((e) => e.msgId)).size;
  return { unique: seen, duplicates, outOfOrder, distinctIds };
}
