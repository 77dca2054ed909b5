import { LeafbridgeError } from '../util/errors.js';

/**
 * A failed Kubernetes API call: `status` is the HTTP status (0 when the server did not answer at all), and
 * `reason` and the message come from the `Status` object the API server answered with. `body` is the start
 * of an answer that was not a Status (a proxy's error page), for messages.
 */
export class KubeApiError extends LeafbridgeError {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown; body?: string },
  ) {
    super(status === 0 ? 'API_UNREACHABLE' : 'API_ERROR', message, options);
    this.body = options?.body ?? '';
  }

  readonly body: string;
}

/**
 * What a failure means to a caller, the one vocabulary of every Kubernetes caller:
 * - `notFound` 404; `conflict` 409 (re-read and retry); `gone` 410 (a list or watch too old: re-list);
 * - `transient` no answer at all (status 0, or a network error), 429 or 5xx: try again later, as it was;
 * - `forbidden` 401, 403; `invalid` 400, 422: refused for good, as they are;
 * - `other` any other status, and anything that is not an API or network failure (a bug, a closed store).
 * Callers that retry on something else (a 404 while a CRD is being established) say so where they do.
 */
export type KubeErrorKind =
  | 'notFound'
  | 'conflict'
  | 'gone'
  | 'transient'
  | 'forbidden'
  | 'invalid'
  | 'other';

/** Node's and undici's codes for a request that got no answer: refused, reset, timed out, name not resolved. */
const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** The HTTP status of an API error (0: no answer), undefined for anything else. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof KubeApiError ? err.status : undefined;
}

export function errorKind(err: unknown): KubeErrorKind {
  const status = statusOf(err);
  if (status === undefined) return noAnswer(err) ? 'transient' : 'other';
  return kindOfStatus(status);
}

/** The kind of an HTTP status (0: no answer). */
export function kindOfStatus(status: number): KubeErrorKind {
  if (status === 0 || status === 429 || status >= 500) return 'transient';
  if (status === 404) return 'notFound';
  if (status === 409) return 'conflict';
  if (status === 410) return 'gone';
  if (status === 401 || status === 403) return 'forbidden';
  if (status === 400 || status === 422) return 'invalid';
  return 'other';
}

/** The server did not answer at all: an API error with status 0, or a network error from elsewhere. */
export function noAnswer(err: unknown): boolean {
  if (err instanceof KubeApiError) return err.status === 0;
  const code = (err as { code?: unknown } | null)?.code;
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  return [code, cause].some((c) => typeof c === 'string' && NETWORK_CODES.has(c));
}

export const isNotFound = (err: unknown): boolean => errorKind(err) === 'notFound';
export const isConflict = (err: unknown): boolean => errorKind(err) === 'conflict';
export const isGone = (err: unknown): boolean => errorKind(err) === 'gone';
export const isTransient = (err: unknown): boolean => errorKind(err) === 'transient';
export const isForbidden = (err: unknown): boolean => errorKind(err) === 'forbidden';
export const isInvalid = (err: unknown): boolean => errorKind(err) === 'invalid';

/** A failure in a few words for logs: `HTTP 503`, or the network error's message. */
export function shortError(err: unknown): string {
  const status = statusOf(err);
  if (status !== undefined && status !== 0) return `HTTP ${status}`;
  return err instanceof Error ? err.message : String(err);
}
