import { createHash } from 'node:crypto';
import type { AccessAttributes, AccessReviews, ReviewedUser } from '../kubeclient/accessReview.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { type Access, type Role, roleAllows } from './access.js';
import type { TokenFile } from './tokenFile.js';

/** The answer to a request's credentials: let it through (as whom), or refuse it with a status. */
export type Decision =
  | { allowed: true; user: string }
  | { allowed: false; status: 401 | 403 | 503; message: string };

export interface HttpAuthOptions {
  logger: Logger;
  /** What a request without credentials may do (`none`: nothing but the public paths). */
  anonymous: Role | 'none';
  /** Standalone tokens, checked first (also in a cluster: a way in while the API server is away). */
  tokens?: TokenFile;
  /** In a cluster: tokens checked with TokenReview, rights with SubjectAccessReview in `namespace`. */
  cluster?: { reviews: AccessReviews; namespace: string };
  /** How long an answer of the API server is reused for the same token (and the same access). */
  cacheTtlMs: number;
  now?: () => number;
}

export const LEAFBRIDGE_GROUP = 'leafbridge.io';

/**
 * Authentication and authorization of the agent's HTTP API. A bearer token is looked up in the tokens file,
 * else (in a cluster) reviewed by the API server; its rights come from the file's role or from RBAC (a
 * SubjectAccessReview for the verb on the leafbridge.io resource, or on the path for /metrics). The API
 * server's answers are cached briefly, as kube-rbac-proxy does; its failures are not (503, try again).
 */
export class HttpAuth {
  private readonly users: TtlCache<ReviewedUser | null>;
  private readonly grants: TtlCache<boolean>;
  private readonly now: () => number;

  constructor(private readonly o: HttpAuthOptions) {
    this.now = o.now ?? Date.now;
    this.users = new TtlCache(o.cacheTtlMs, this.now);
    this.grants = new TtlCache(o.cacheTtlMs, this.now);
  }

  async decide(authorization: string | undefined, access: Access): Promise<Decision> {
    if (access.kind === 'public') return { allowed: true, user: 'system:anonymous' };
    if (authorization === undefined || authorization === '') {
      if (roleAllows(this.o.anonymous, access)) return { allowed: true, user: 'system:anonymous' };
      return refuse(401, 'credentials required: send Authorization: Bearer <token>');
    }
    const m = /^Bearer +(\S+)\s*$/i.exec(authorization);
    if (!m) return refuse(401, 'only bearer tokens are accepted (Authorization: Bearer <token>)');
    const token = m[1] as string;
    const entry = this.o.tokens?.match(token);
    if (entry) {
      if (roleAllows(entry.role, access)) return { allowed: true, user: entry.name };
      return refuse(403, `token "${entry.name}" (${entry.role}) may not ${describe(access)}`);
    }
    if (!this.o.cluster) return refuse(401, 'the token is not valid');
    return this.decideInCluster(token, access, this.o.cluster);
  }

  private async decideInCluster(
    token: string,
    access: Exclude<Access, { kind: 'public' }>,
    cluster: NonNullable<HttpAuthOptions['cluster']>,
  ): Promise<Decision> {
    const tokenKey = createHash('sha256').update(token).digest('hex');
    let user: ReviewedUser | null | undefined;
    try {
      user = await this.users.get(tokenKey, async () => (await cluster.reviews.reviewToken(token)) ?? null);
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'TokenReview failed');
      return refuse(503, 'the Kubernetes API server cannot check the token now; try again');
    }
    if (!user) return refuse(401, 'the token is not valid');
    const attributes = attributesOf(access, cluster.namespace);
    const grantKey = `${tokenKey} ${JSON.stringify(attributes)}`;
    let allowed: boolean;
    try {
      allowed = await this.grants.get(grantKey, () => cluster.reviews.allowed(user, attributes));
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'SubjectAccessReview failed');
      return refuse(503, 'the Kubernetes API server cannot check the access now; try again');
    }
    if (allowed) return { allowed: true, user: user.username };
    return refuse(403, `${user.username} may not ${describe(access)}`);
  }
}

function attributesOf(access: Exclude<Access, { kind: 'public' }>, namespace: string): AccessAttributes {
  if (access.kind === 'path') return { path: access.path, verb: access.verb };
  return {
    group: LEAFBRIDGE_GROUP,
    resource: access.resource,
    verb: access.verb,
    namespace,
    ...(access.name !== undefined ? { name: access.name } : {}),
  };
}

function describe(access: Exclude<Access, { kind: 'public' }>): string {
  if (access.kind === 'path') return `${access.verb} ${access.path}`;
  const what = `${access.resource}.${LEAFBRIDGE_GROUP}`;
  return `${access.verb} ${what}${access.name !== undefined ? ` "${access.name}"` : ''}`;
}

function refuse(status: 401 | 403 | 503, message: string): Decision {
  return { allowed: false, status, message };
}

/** Answers kept for `ttlMs`, at most `max` of them (the oldest go first); one lookup at a time per key. */
class TtlCache<V> {
  private readonly entries = new Map<string, { value: Promise<V>; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
    private readonly max = 4096,
  ) {}

  get(key: string, load: () => Promise<V>): Promise<V> {
    const now = this.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return hit.value;
    this.entries.delete(key);
    const value = load();
    const entry = { value, until: now + this.ttlMs };
    this.entries.set(key, entry);
    // A failure is not kept: the next request asks again.
    value.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return value;
  }
}
