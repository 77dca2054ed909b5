import { edgeTopic } from '../model/topics.js';

const MEMO_MAX = 50_000;

/** A message the hub takes from the cloud broker, by what its topic says. */
export type HubTopic =
  | { kind: 'reported'; node: string; device: string }
  | { kind: 'status'; node: string; device: string }
  | { kind: 'telemetry'; node: string; device: string; stream: string }
  | { kind: 'agentStatus'; node: string };

/**
 * The cloud side of docs/mqtt.md's "Upstream" topics: `{prefix}/{node}/devices/{id}/...` and
 * `{prefix}/{node}/agent/status`. The prefix may span several levels; a node or id is one non-empty level.
 */
export class HubTopics {
  private readonly root: string;
  private readonly memo = new Map<string, HubTopic | undefined>();

  constructor(
    readonly prefix: string,
    readonly group: string,
  ) {
    this.root = `${prefix}/`;
  }

  /** The subscriptions (shared over `group` unless `shared` is false), telemetry only when asked for. */
  filters(shared: boolean, telemetry: boolean): string[] {
    const p = this.prefix;
    const plain = [`${p}/+/devices/+/twin/reported`, `${p}/+/devices/+/status`, `${p}/+/agent/status`];
    if (telemetry) plain.push(`${p}/+/devices/+/telemetry/#`);
    return shared ? plain.map((f) => `$share/${this.group}/${f}`) : plain;
  }

  /** Where the desired twin of device `id` on `node` is published. */
  desired(node: string, id: string): string {
    return `${this.root}${node}/${edgeTopic.desired(id)}`;
  }

  /** The topic parsed; memoised (each device reuses a few topics), the memo cleared when it reaches its bound. */
  parse(topic: string): HubTopic | undefined {
    const hit = this.memo.get(topic);
    if (hit !== undefined || this.memo.has(topic)) return hit;
    if (this.memo.size >= MEMO_MAX) this.memo.clear();
    const parsed = this.parseUncached(topic);
    this.memo.set(topic, parsed);
    return parsed;
  }

  private parseUncached(topic: string): HubTopic | undefined {
    if (!topic.startsWith(this.root)) return undefined;
    const parts = topic.slice(this.root.length).split('/');
    const node = parts[0];
    if (!node) return undefined;
    if (parts.length === 3 && parts[1] === 'agent' && parts[2] === 'status')
      return { kind: 'agentStatus', node };
    if (parts[1] !== 'devices' || parts.length < 4) return undefined;
    const device = parts[2];
    if (!device) return undefined;
    if (parts.length === 4 && parts[3] === 'status') return { kind: 'status', node, device };
    if (parts.length === 5 && parts[3] === 'twin' && parts[4] === 'reported')
      return { kind: 'reported', node, device };
    if (parts[3] === 'telemetry' && parts.length >= 5) {
      const stream = parts.slice(4);
      if (stream.every((s) => s.length > 0))
        return { kind: 'telemetry', node, device, stream: stream.join('/') };
    }
    return undefined;
  }
}

/** Whether `id` can be one topic level: not empty, no `/`, `+`, `#` or NUL. */
export function topicLevelOk(id: string): boolean {
  return id.length > 0 && !id.includes('/') && !id.includes('+') && !id.includes('#') && !id.includes('\0');
}
