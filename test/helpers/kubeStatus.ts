import type { FieldError } from './kubeSchema.js';

/**
 * Kubernetes `Status` objects, the body of every API error
 * (https://kubernetes.io/docs/reference/using-api/api-concepts/#responses), and the error the test API
 * server throws internally to answer with one.
 */
export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message: string;
  reason: string;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    uid?: string;
    causes?: { reason: string; message: string; field?: string }[];
    retryAfterSeconds?: number;
  };
  code: number;
}

/** Thrown inside the test API server; the router answers with its Status. */
export class KubeError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
  }
  get code(): number {
    return this.status.code;
  }
}

export function status(code: number, reason: string, message: string, details?: Status['details']): Status {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** What the resource is called in messages: `devices.leafbridge.io` or `pods`. */
export interface ResourceRef {
  plural: string;
  group: string;
  kind: string;
}

const qualified = (r: ResourceRef) => (r.group ? `${r.plural}.${r.group}` : r.plural);

export const errors = {
  notFound: (r: ResourceRef, name: string) =>
    new KubeError(
      status(404, 'NotFound', `${qualified(r)} "${name}" not found`, {
        name,
        group: r.group,
        kind: r.plural,
      }),
    ),
  alreadyExists: (r: ResourceRef, name: string) =>
    new KubeError(
      status(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, {
        name,
        group: r.group,
        kind: r.plural,
      }),
    ),
  conflict: (
    r: ResourceRef,
    name: string,
    why = 'the object has been modified; please apply your changes to the latest version and try again',
  ) =>
    new KubeError(
      status(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, {
        name,
        group: r.group,
        kind: r.plural,
      }),
    ),
  invalid: (r: ResourceRef, name: string, causes: FieldError[]) => {
    const lines = causes.map((c) => `${c.field}: ${c.message}`);
    const list = lines.length === 1 ? lines[0] : `[${lines.join(', ')}]`;
    return new KubeError(
      status(422, 'Invalid', `${r.kind}${r.group ? `.${r.group}` : ''} "${name}" is invalid: ${list}`, {
        name,
        group: r.group,
        kind: r.kind,
        causes: causes.map((c) => ({ reason: c.reason, message: c.message, field: c.field })),
      }),
    );
  },
  badRequest: (message: string) => new KubeError(status(400, 'BadRequest', message)),
  methodNotAllowed: (message = 'the server does not allow this method on the requested resource') =>
    new KubeError(status(405, 'MethodNotAllowed', message)),
  unsupportedMediaType: (type: string) =>
    new KubeError(
      status(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got ${type})`,
      ),
    ),
  gone: (message: string) => new KubeError(status(410, 'Expired', message)),
  tooLargeResourceVersion: (rv: string, current: number) =>
    new KubeError(
      status(504, 'Timeout', `Too large resource version: ${rv}, current: ${current}`, {
        causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
        retryAfterSeconds: 1,
      }),
    ),
  notFoundPath: (path: string) =>
    new KubeError(status(404, 'NotFound', `the server could not find the requested resource (${path})`)),
  injected: (code: number) => {
    const reasons: Record<number, string> = {
      429: 'TooManyRequests',
      500: 'InternalError',
      502: 'InternalError',
      503: 'ServiceUnavailable',
      504: 'Timeout',
    };
    const message =
      code === 503
        ? 'the server is currently unable to handle the request (injected)'
        : code === 429
          ? 'the server has received too many requests and has asked us to try again later (injected)'
          : 'Internal error occurred: injected failure';
    return new KubeError(
      status(
        code,
        reasons[code] ?? 'InternalError',
        message,
        code === 429 || code === 503 ? { retryAfterSeconds: 1 } : undefined,
      ),
    );
  },
};
