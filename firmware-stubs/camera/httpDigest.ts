import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { StubCredentials } from './auth.js';

/** HTTP Digest access authentication (RFC 7616, MD5, qop=auth), as cameras guard their snapshot URIs. */
export const digestRealm = 'leafbridge-camera';

const nonceLifetimeMs = 5 * 60_000;
/** Nonces are stateless: a time and its HMAC under a key that lives as long as the stub. */
const nonceKey = randomBytes(32);

const md5 = (text: string): string => createHash('md5').update(text).digest('hex');

function sign(time: string): string {
  return createHmac('sha256', nonceKey).update(time).digest('base64url');
}

export function digestChallenge(nowMs: number, stale = false): string {
  const time = String(nowMs);
  const nonce = `${Buffer.from(time).toString('base64url')}.${sign(time)}`;
  return `Digest realm="${digestRealm}", qop="auth", algorithm=MD5, nonce="${nonce}"${stale ? ', stale=true' : ''}`;
}

/** `key="value"` and `key=token` pairs of an Authorization header. */
function params(header: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of header.matchAll(/([a-zA-Z]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    out.set((m[1] ?? '').toLowerCase(), (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1'));
  }
  return out;
}

function nonceFresh(nonce: string, nowMs: number): boolean {
  const [encoded = '', signature = ''] = nonce.split('.');
  const time = Buffer.from(encoded, 'base64url').toString();
  const want = Buffer.from(sign(time));
  const got = Buffer.from(signature);
  if (got.length !== want.length || !timingSafeEqual(got, want)) return false;
  return nowMs - Number(time) <= nonceLifetimeMs;
}

export type DigestResult = 'ok' | 'missing' | 'bad' | 'stale';

/** Checks an `Authorization: Digest …` header for `method` on the request's `uri`. */
export function checkDigest(
  header: string | undefined,
  method: string,
  expected: StubCredentials,
  nowMs: number,
): DigestResult {
  if (!header?.startsWith('Digest ')) return 'missing';
  const p = params(header.slice('Digest '.length));
  const [nonce, uri, response] = [p.get('nonce'), p.get('uri'), p.get('response')];
  if (p.get('username') !== expected.username || p.get('realm') !== digestRealm) return 'bad';
  if (!nonce || !uri || !response) return 'bad';
  const ha1 = md5(`${expected.username}:${digestRealm}:${expected.password}`);
  const ha2 = md5(`${method}:${uri}`);
  const qop = p.get('qop');
  const want =
    qop === 'auth'
      ? md5(`${ha1}:${nonce}:${p.get('nc') ?? ''}:${p.get('cnonce') ?? ''}:auth:${ha2}`)
      : md5(`${ha1}:${nonce}:${ha2}`);
  if (want.length !== response.length || !timingSafeEqual(Buffer.from(want), Buffer.from(response)))
    return 'bad';
  return nonceFresh(nonce, nowMs) ? 'ok' : 'stale';
}
