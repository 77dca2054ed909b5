import { describe, expect, it } from 'vitest';
import {
  errorKind,
  isConflict,
  isForbidden,
  isGone,
  isInvalid,
  isNotFound,
  isTransient,
  KubeApiError,
  kindOfStatus,
  noAnswer,
  shortError,
  statusOf,
} from '../../../src/kubeclient/kubeApiError.js';
import { apiError } from '../../../src/kubeclient/kubeRest.js';
import { LeafbridgeError } from '../../../src/util/errors.js';

const api = (status: number) => new KubeApiError(status, '', `HTTP ${status}`);

describe('the Kubernetes error vocabulary', () => {
  it.each([
    [0, 'transient'],
    [429, 'transient'],
    [500, 'transient'],
    [502, 'transient'],
    [503, 'transient'],
    [504, 'transient'],
    [404, 'notFound'],
    [409, 'conflict'],
    [410, 'gone'],
    [401, 'forbidden'],
    [403, 'forbidden'],
    [400, 'invalid'],
    [422, 'invalid'],
    [405, 'other'],
    [415, 'other'],
  ] as const)('HTTP %i is %s', (status, kind) => {
    expect(kindOfStatus(status)).toBe(kind);
    expect(errorKind(api(status))).toBe(kind);
  });

  it('the predicates agree with the kinds', () => {
    const predicates = { isNotFound, isConflict, isGone, isTransient, isForbidden, isInvalid };
    const holding = (status: number) =>
      Object.entries(predicates)
        .filter(([, p]) => p(api(status)))
        .map(([name]) => name);
    expect([404, 409, 410, 503, 403, 422, 405].map(holding)).toEqual([
      ['isNotFound'],
      ['isConflict'],
      ['isGone'],
      ['isTransient'],
      ['isForbidden'],
      ['isInvalid'],
      [],
    ]);
    expect(isNotFound(api(404)) && !isTransient(api(404))).toBe(true);
    expect(isConflict(api(409)) && !isTransient(api(409))).toBe(true);
    expect(isGone(api(410))).toBe(true);
    expect(isTransient(api(0)) && noAnswer(api(0))).toBe(true);
    expect(noAnswer(api(503))).toBe(false);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET'])(
    'a network error (%s), on the error or its cause, is transient: no answer',
    (code) => {
      const direct = Object.assign(new Error('connect failed'), { code });
      const wrapped = new TypeError('fetch failed', { cause: direct });
      for (const err of [direct, wrapped]) {
        expect(errorKind(err)).toBe('transient');
        expect(noAnswer(err)).toBe(true);
        expect(statusOf(err)).toBeUndefined();
      }
    },
  );

  it('anything else is other: a bug, a closed store, a value that is not an error', () => {
    for (const err of [
      new TypeError('x is undefined'),
      new LeafbridgeError('STORE_CLOSED', 'closed'),
      'text',
      null,
    ]) {
      expect(errorKind(err)).toBe('other');
      expect(isTransient(err)).toBe(false);
    }
  });

  it('codes and short forms', () => {
    expect(api(0).code).toBe('API_UNREACHABLE');
    expect(api(500).code).toBe('API_ERROR');
    expect(shortError(api(503))).toBe('HTTP 503');
    expect(shortError(new KubeApiError(0, 'Unreachable', 'GET /x: connect ECONNREFUSED'))).toBe(
      'GET /x: connect ECONNREFUSED',
    );
  });
});

describe('apiError: an answer other than 2xx', () => {
  it('takes reason and message from a Status body', () => {
    const body = JSON.stringify({
      kind: 'Status',
      code: 409,
      reason: 'Conflict',
      message: 'the object changed',
    });
    const err = apiError(409, body, 'PUT /x');
    expect(err).toMatchObject({ status: 409, reason: 'Conflict', message: 'the object changed', body });
    expect(isConflict(err)).toBe(true);
  });

  it('keeps a generic message and the start of the body for anything else', () => {
    const err = apiError(502, '<html>bad gateway</html>', 'GET /x');
    expect(err).toMatchObject({ status: 502, reason: '', message: 'GET /x: HTTP 502' });
    expect(err.body).toBe('<html>bad gateway</html>');
    expect(apiError(500, 'x'.repeat(5000), 'GET /x').body).toHaveLength(1000);
  });
});
