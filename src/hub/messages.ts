import { MESSAGE_ID_PROPERTY } from '../model/topics.js';
import { type JsonObject, parseObject } from '../sync/twins.js';
import { PayloadError } from '../util/errors.js';

/** `{epoch}-{seq}` of an edge's outbox (docs/mqtt.md, "Message ids"). */
export interface MessageId {
  epoch: string;
  seq: number;
  /** As received, for logs and the Connected condition. */
  text: string;
}

/** Where a state came from and how it orders: within one epoch by `order`, across epochs by arrival. */
export interface Origin {
  node: string;
  /** The edge database's epoch; absent for an MQTT 3.1.1 upstream (no message ids). */
  epoch?: string;
  /** Wall-clock ms the hub received it. */
  receivedAt: number;
}

/** A reported twin as the edge sent it: the whole twin, ordered by its `$version`. */
export interface Report extends Origin {
  doc: JsonObject;
  version: number;
}

/** A device's presence on the edge broker, ordered by the message's outbox sequence. */
export interface Presence extends Origin {
  online: boolean;
  /** The message id (absent without one: then arrival order decides). */
  msgId?: MessageId;
}

const MSG_ID = /^([0-9A-Za-z]{1,64})-(\d{1,15})$/;

/** The `lb-msg-id` user property parsed; undefined when absent; PayloadError when malformed. */
export function messageIdOf(properties: { userProperties?: Record<string, unknown> } | undefined) {
  const raw = properties?.userProperties?.[MESSAGE_ID_PROPERTY];
  if (raw === undefined) return undefined;
  const text = Array.isArray(raw) ? raw[0] : raw;
  const m = typeof text === 'string' ? MSG_ID.exec(text) : null;
  if (!m) throw new PayloadError('MSG_ID_INVALID', `${MESSAGE_ID_PROPERTY} is not {epoch}-{seq}`);
  return { epoch: m[1] as string, seq: Number(m[2]), text: text as string } satisfies MessageId;
}

/** A reported-twin payload: a JSON object (nested at most 32 deep) with an integer `$version` ≥ 1. */
export function parseReport(payload: Buffer, origin: Origin): Report {
  const doc = parseObject(payload, 'reported twin');
  const version = doc.$version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new PayloadError('TWIN_VERSION', 'reported twin needs an integer $version >= 1');
  }
  return { ...origin, doc, version };
}

/** A status payload: exactly `online` or `offline`. */
export function parsePresence(payload: Buffer, origin: Origin, msgId: MessageId | undefined): Presence {
  const value = payload.toString('utf8');
  if (value !== 'online' && value !== 'offline') {
    throw new PayloadError('STATUS_INVALID', 'status must be online or offline');
  }
  return { ...origin, online: value === 'online', ...(msgId ? { msgId } : {}) };
}
