import { describe, expect, it } from 'vitest';
import { accessOf, roleAllows } from '../../../src/api/access.js';

describe('what each HTTP request needs', () => {
  it.each([
    ['GET', '/healthz', { kind: 'public' }],
    ['GET', '/readyz', { kind: 'public' }],
    ['GET', '/dashboard/app.js', { kind: 'public' }],
    ['GET', '/', { kind: 'public' }],
    ['GET', '/metrics', { kind: 'path', path: '/metrics', verb: 'get' }],
    ['GET', '/api/v1/devices', { kind: 'resource', resource: 'devices', verb: 'list' }],
    [
      'GET',
      '/api/v1/devices/cam-1a2b3c',
      { kind: 'resource', resource: 'devices', verb: 'get', name: 'cam-1a2b3c' },
    ],
    ['GET', '/api/v1/events', { kind: 'resource', resource: 'devices', verb: 'watch' }],
    ['GET', '/api/v1/twins/sensor-1', { kind: 'resource', resource: 'devices', verb: 'get' }],
    ['POST', '/api/v1/discoveryconfigs', { kind: 'resource', resource: 'discoveryconfigs', verb: 'create' }],
    [
      'PUT',
      '/api/v1/discoveryconfigs/a',
      { kind: 'resource', resource: 'discoveryconfigs', verb: 'update', name: 'a' },
    ],
    [
      'DELETE',
      '/api/v1/discoveryconfigs/a',
      { kind: 'resource', resource: 'discoveryconfigs', verb: 'delete', name: 'a' },
    ],
    // Not a read, so not public, whatever the path.
    ['POST', '/healthz', { kind: 'path', path: '/healthz', verb: 'post' }],
    ['POST', '/dashboard/', { kind: 'path', path: '/dashboard/', verb: 'post' }],
    ['GET', '/api/v1/other', { kind: 'path', path: '/api/v1/other', verb: 'get' }],
  ])('%s %s', (method, path, access) => {
    expect(accessOf(method, path)).toEqual(access);
  });

  it('read-only covers reads only; read-write everything; none nothing but the public paths', () => {
    const list = accessOf('GET', '/api/v1/devices');
    const create = accessOf('POST', '/api/v1/discoveryconfigs');
    expect([roleAllows('read-only', list), roleAllows('read-only', create)]).toEqual([true, false]);
    expect([roleAllows('read-write', list), roleAllows('read-write', create)]).toEqual([true, true]);
    expect([roleAllows('none', list), roleAllows('none', accessOf('GET', '/healthz'))]).toEqual([
      false,
      true,
    ]);
  });
});
