/** The topics of the announcement protocol (README.md), under one prefix. */
export interface AnnounceTopics {
  prefix: string;
  /** Subscription filters, status first: a device's presence is best known before its birth arrives. */
  filters: readonly [string, string];
}

export const AnnounceKind = {
  birth: 'birth',
  status: 'status',
} as const;
export type AnnounceKind = (typeof AnnounceKind)[keyof typeof AnnounceKind];

export interface AnnounceTopic {
  kind: AnnounceKind;
  id: string;
}

export function announceTopics(prefix: string): AnnounceTopics {
  return { prefix, filters: [`${prefix}/+/status`, `${prefix}/+/birth`] };
}

/** `{prefix}/{id}/birth` or `{prefix}/{id}/status` → its kind and id; anything else → undefined. */
export function parseAnnounceTopic(topics: AnnounceTopics, topic: string): AnnounceTopic | undefined {
  const head = `${topics.prefix}/`;
  if (!topic.startsWith(head)) return undefined;
  const rest = topic.slice(head.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const id = rest.slice(0, slash);
  const kind = rest.slice(slash + 1);
  if (kind !== AnnounceKind.birth && kind !== AnnounceKind.status) return undefined;
  return { kind, id };
}

/** The topics a pod working with device `id` uses, handed to it as properties. */
export function deviceTopics(prefix: string, id: string): { telemetry: string; commands: string } {
  return { telemetry: `${prefix}/${id}/telemetry/#`, commands: `${prefix}/${id}/commands` };
}
