import { createHash, timingSafeEqual } from 'node:crypto';
import { at, textAt, type XmlElement } from './xml.js';

export interface StubCredentials {
  username: string;
  password: string;
}

export const AuthResult = { ok: 'ok', missing: 'missing', bad: 'bad', stale: 'stale' } as const;
export type AuthResult = (typeof AuthResult)[keyof typeof AuthResult];

/** How far a token's Created may be from the camera's clock (WS-Security leaves it to the service). */
const maxSkewMs = 5 * 60_000;

/**
 * Checks a WS-UsernameToken PasswordDigest: Base64(SHA1(nonce + created + password)), with the nonce
 * Base64-decoded first, and a Created within five minutes of `nowMs`.
 */
export function verifyUsernameToken(
  envelope: XmlElement | undefined,
  expected: StubCredentials,
  nowMs: number,
): AuthResult {
  const token = at(envelope, 'Header', 'Security', 'UsernameToken');
  if (!token) return AuthResult.missing;
  const username = textAt(token, 'Username');
  const digest = textAt(token, 'Password');
  const nonce = textAt(token, 'Nonce');
  const created = textAt(token, 'Created');
  if (username !== expected.username || !digest || !nonce || !created) return AuthResult.bad;
  const createdMs = Date.parse(created);
  if (!Number.isFinite(createdMs) || Math.abs(createdMs - nowMs) > maxSkewMs) return AuthResult.stale;
  const want = createHash('sha1')
    .update(
      Buffer.concat([Buffer.from(nonce, 'base64'), Buffer.from(created), Buffer.from(expected.password)]),
    )
    .digest();
  const got = Buffer.from(digest, 'base64');
  return got.length === want.length && timingSafeEqual(got, want) ? AuthResult.ok : AuthResult.bad;
}
