import { createHash } from 'node:crypto';
import { DEVICE_ID_PATTERN, type RawAgentConfig } from '../config/schema.js';
import { parseEdgeTopic, UPSTREAM_KINDS } from '../model/topics.js';
import { verifyPassword } from '../util/password.js';
import type { Credentials, CredentialsFile } from './credentialsFile.js';

/** Who a connected client is, decided once at CONNECT. */
export type Identity =
  | { kind: 'device'; device: string; username: string }
  | { kind: 'user'; username: string; publish: readonly string[]; subscribe: readonly string[] }
  | { kind: 'anonymous' };

export type AuthResult =
  | { ok: true; identity: Identity }
  | { ok: false; reason: 'bad-credentials' | 'anonymous-refused' | 'bad-certificate' };

type Credential =
  | { kind: 'device'; device: string; passwordHash: string }
  | { kind: 'user'; passwordHash: string; publish: string[]; subscribe: string[] };

const DEVICE_ID = new RegExp(DEVICE_ID_PATTERN);

/**
 * Edge broker authentication and topic ACL. A device publishes only what a device sends (telemetry,
 * reported twin, status, command results) under `devices/{its id}/`, and subscribes only there. Other users
 * get the topic filters the config grants them. Anonymous clients only when the config allows them.
 * Credentials come from the config and, when given, a credentials file read again when it changes.
 */
export class Authorizer {
  private credentials = new Map<string, Credential>();
  private fileVersion = -1;
  /** Passwords already verified, by username → sha256(password): scrypt runs once per device, not per CONNECT. */
  private readonly verified = new Map<string, string>();

  constructor(
    private readonly auth: Pick<RawAgentConfig['auth'], 'allowAnonymous' | 'devices' | 'users'>,
    private readonly file?: CredentialsFile,
  ) {
    this.credentials = credentialMap(auth, { devices: [], users: [] });
  }

  async authenticate(username: string | undefined, password: Buffer | undefined): Promise<AuthResult> {
    if (username === undefined || username === '') {
      return this.auth.allowAnonymous
        ? { ok: true, identity: { kind: 'anonymous' } }
        : { ok: false, reason: 'anonymous-refused' };
    }
    const cred = this.current().get(username);
    const secret = password?.toString('utf8') ?? '';
    if (!cred || !(await this.check(username, secret, cred.passwordHash)))
      return { ok: false, reason: 'bad-credentials' };
    return { ok: true, identity: identityOf(cred, username) };
  }

  /**
   * A client whose certificate the TLS layer verified, named by it (its CN or a SAN): the device or user of
   * that username, or else the device of that id, under the same ACL as with a password. A username in the
   * CONNECT, if any, must be that name.
   */
  authenticateCertificate(name: string | undefined, username: string | undefined): AuthResult {
    if (name === undefined || name === '') return { ok: false, reason: 'bad-certificate' };
    if (username !== undefined && username !== '' && username !== name)
      return { ok: false, reason: 'bad-credentials' };
    const cred = this.current().get(name);
    if (cred) return { ok: true, identity: identityOf(cred, name) };
    if (!DEVICE_ID.test(name)) return { ok: false, reason: 'bad-certificate' };
    return { ok: true, identity: { kind: 'device', device: name, username: name } };
  }

  private current(): Map<string, Credential> {
    if (!this.file) return this.credentials;
    const fromFile = this.file.current();
    if (this.file.version !== this.fileVersion) {
      this.credentials = credentialMap(this.auth, fromFile);
      this.fileVersion = this.file.version;
    }
    return this.credentials;
  }

  canPublish(identity: Identity, topic: string): boolean {
    const parsed = parseEdgeTopic(topic);
    switch (identity.kind) {
      case 'device':
        return parsed !== undefined && parsed.device === identity.device && UPSTREAM_KINDS.has(parsed.kind);
      case 'anonymous':
        return parsed !== undefined && UPSTREAM_KINDS.has(parsed.kind);
      case 'user':
        return identity.publish.some((filter) => filterCovers(filter, topic));
    }
  }

  canSubscribe(identity: Identity, filter: string): boolean {
    switch (identity.kind) {
      case 'device':
        return filterCovers(`devices/${identity.device}/#`, filter);
      case 'anonymous':
        return filterCovers('devices/#', filter);
      case 'user':
        return identity.subscribe.some((allowed) => filterCovers(allowed, filter));
    }
  }

  private async check(username: string, password: string, hash: string): Promise<boolean> {
    const digest = createHash('sha256').update(hash).update('\0').update(password).digest('base64');
    if (this.verified.get(username) === digest) return true;
    const ok = await verifyPassword(password, hash);
    if (ok) this.verified.set(username, digest);
    return ok;
  }
}

function credentialMap(inConfig: Credentials, fromFile: Credentials): Map<string, Credential> {
  const map = new Map<string, Credential>();
  for (const d of [...inConfig.devices, ...fromFile.devices])
    map.set(d.username ?? d.id, { kind: 'device', device: d.id, passwordHash: d.passwordHash });
  for (const u of [...inConfig.users, ...fromFile.users])
    map.set(u.username, {
      kind: 'user',
      passwordHash: u.passwordHash,
      publish: u.publish,
      subscribe: u.subscribe,
    });
  return map;
}

function identityOf(cred: Credential, username: string): Identity {
  return cred.kind === 'device'
    ? { kind: 'device', device: cred.device, username }
    : { kind: 'user', username, publish: cred.publish, subscribe: cred.subscribe };
}

/** True when every topic matched by `filter` is also matched by `allowed` (both MQTT topic filters). */
export function filterCovers(allowed: string, filter: string): boolean {
  const a = allowed.split('/');
  const f = filter.split('/');
  for (let i = 0; i < a.length; i++) {
    const p = a[i];
    if (p === '#') return true;
    const q = f[i];
    if (q === undefined || q === '#') return false;
    if (p === '+') continue;
    if (q === '+' || p !== q) return false;
  }
  return a.length === f.length;
}
