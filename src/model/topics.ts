/** The MQTT topics of DESIGN.md, typed in one place. Upstream topics are these under `{prefix}/{node}/`. */
export const edgeTopic = {
  telemetry: (id: string, stream: string) => `devices/${id}/telemetry/${stream}`,
  reported: (id: string) => `devices/${id}/twin/reported`,
  desired: (id: string) => `devices/${id}/twin/desired`,
  delta: (id: string) => `devices/${id}/twin/delta`,
  command: (id: string, name: string) => `devices/${id}/commands/${name}`,
  commandResult: (id: string, name: string) => `devices/${id}/commands/${name}/result`,
  status: (id: string) => `devices/${id}/status`,
  birth: (id: string) => `devices/${id}/birth`,
} as const;

export type EdgeTopic =
  | { kind: 'telemetry'; device: string; stream: string }
  | { kind: 'reported'; device: string }
  | { kind: 'desired'; device: string }
  | { kind: 'delta'; device: string }
  | { kind: 'command'; device: string; name: string }
  | { kind: 'commandResult'; device: string; name: string }
  | { kind: 'status'; device: string }
  | { kind: 'birth'; device: string };

/** Kinds a device sends towards the cloud; each goes through the outbox. */
export const UPSTREAM_KINDS = new Set<EdgeTopic['kind']>([
  'telemetry',
  'reported',
  'status',
  'commandResult',
  'birth',
]);

const parsed = new Map<string, EdgeTopic | undefined>();
const PARSED_MAX = 10_000;

/** Parses a `devices/{id}/...` topic. Devices reuse a few topics each, so results are memoised (bounded). */
export function parseEdgeTopic(topic: string): EdgeTopic | undefined {
  const hit = parsed.get(topic);
  if (hit !== undefined || parsed.has(topic)) return hit;
  if (parsed.size >= PARSED_MAX) parsed.clear();
  const result = parseUncached(topic);
  parsed.set(topic, result);
  return result;
}

function parseUncached(topic: string): EdgeTopic | undefined {
  const parts = topic.split('/');
  if (parts[0] !== 'devices' || parts.length < 3) return undefined;
  const device = parts[1] as string;
  if (device.length === 0) return undefined;
  const rest = parts.slice(2);
  switch (rest[0]) {
    case 'telemetry':
      return rest.length >= 2 && rest.slice(1).every((p) => p.length > 0)
        ? { kind: 'telemetry', device, stream: rest.slice(1).join('/') }
        : undefined;
    case 'twin':
      if (rest.length !== 2) return undefined;
      if (rest[1] === 'reported') return { kind: 'reported', device };
      if (rest[1] === 'desired') return { kind: 'desired', device };
      if (rest[1] === 'delta') return { kind: 'delta', device };
      return undefined;
    case 'commands': {
      const name = rest[1];
      if (!name) return undefined;
      if (rest.length === 2) return { kind: 'command', device, name };
      if (rest.length === 3 && rest[2] === 'result') return { kind: 'commandResult', device, name };
      return undefined;
    }
    case 'status':
      return rest.length === 1 ? { kind: 'status', device } : undefined;
    case 'birth':
      return rest.length === 1 ? { kind: 'birth', device } : undefined;
    default:
      return undefined;
  }
}

/** `{prefix}/{node}/` — the root of this node's topics on the upstream broker. */
export function upstreamRoot(prefix: string, node: string): string {
  return `${prefix}/${node}/`;
}

/** Strips this node's upstream root, or undefined when the topic is not ours. */
export function fromUpstream(root: string, topic: string): EdgeTopic | undefined {
  return topic.startsWith(root) ? parseEdgeTopic(topic.slice(root.length)) : undefined;
}

/** MQTT topic-filter match (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const part = f[i];
    if (part === '#') return i < t.length || i === t.length;
    if (i >= t.length) return false;
    if (part !== '+' && part !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The user property that carries a message's stable id upstream (MQTT 5). */
export const MESSAGE_ID_PROPERTY = 'lb-msg-id';
