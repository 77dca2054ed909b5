// What the broker refuses and why: shared by aedes' hooks (edgeBroker.ts) and the core (core/).
import type { PublishPacket } from 'aedes';
import { OutboxFullError } from '../database/outbox.js';
import { storageFailure } from '../database/writeHealth.js';
import { PayloadError } from '../util/errors.js';
import type { Identity } from './auth.js';

/**
 * What the broker hands the sync layer for every accepted device PUBLISH. `done` is called once the message is
 * durable, or with an error that refuses the PUBLISH (a callback: this runs once per device message).
 */
export type Ingest = (
  identity: Identity,
  clientId: string,
  packet: PublishPacket,
  done: (err?: Error) => void,
) => void;

export const REFUSAL_REASONS = [
  'connect',
  'publish',
  'subscribe',
  'rate',
  'payload',
  'outbox-full',
  'storage',
  'internal',
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Counts a refusal and logs it (once per client and reason, then as a sum per interval). */
export type Refuse = (
  reason: RefusalReason,
  clientId: string | undefined,
  details: Record<string, unknown>,
  msg: string,
) => void;

/** Why the sync layer refused a PUBLISH: the device's fault (payload), or the agent's (full, storage, internal). */
export type IngestRefusal = Extract<RefusalReason, 'outbox-full' | 'storage' | 'payload' | 'internal'>;

export function ingestRefusal(err: unknown): IngestRefusal {
  if (err instanceof OutboxFullError) return 'outbox-full';
  if (storageFailure(err)) return 'storage';
  if (err instanceof PayloadError) return 'payload';
  return 'internal';
}

export const refusalMessage: Record<IngestRefusal, string> = {
  'outbox-full': 'PUBLISH refused: outbox full',
  storage: 'PUBLISH refused: the store cannot write',
  payload: 'PUBLISH refused: invalid payload',
  internal: 'PUBLISH refused: internal error',
};
