import type { KubeRest } from './kubeRest.js';

/** Who a bearer token belongs to, as the API server's TokenReview says. */
export interface ReviewedUser {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** What a request wants, in SubjectAccessReview terms: a verb on a resource, or on a path (`/metrics`). */
export type AccessAttributes =
  | { group: string; resource: string; verb: string; namespace: string; name?: string }
  | { path: string; verb: string };

interface TokenReviewStatus {
  status?: { authenticated?: boolean; user?: Partial<ReviewedUser>; error?: string };
}

interface AccessReviewStatus {
  status?: { allowed?: boolean; denied?: boolean; reason?: string };
}

/**
 * The API server's answers to "whose token is this?" (TokenReview) and "may this user do that?"
 * (SubjectAccessReview), as the kubelet and kube-rbac-proxy ask them. Failures are `KubeApiError`s; a
 * token the server does not accept is `undefined`, not an error.
 */
export class AccessReviews {
  constructor(private readonly rest: KubeRest) {}

  async reviewToken(token: string): Promise<ReviewedUser | undefined> {
    const answer = await this.rest.call<TokenReviewStatus>({
      method: 'POST',
      path: '/apis/authentication.k8s.io/v1/tokenreviews',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
    });
    const status = answer.status;
    if (!status?.authenticated || typeof status.user?.username !== 'string') return undefined;
    const { username, uid, groups, extra } = status.user;
    return {
      username,
      groups: Array.isArray(groups) ? groups : [],
      ...(typeof uid === 'string' ? { uid } : {}),
      ...(extra ? { extra } : {}),
    };
  }

  async allowed(user: ReviewedUser, attributes: AccessAttributes): Promise<boolean> {
    const target =
      'path' in attributes
        ? { nonResourceAttributes: { path: attributes.path, verb: attributes.verb } }
        : { resourceAttributes: attributes };
    const answer = await this.rest.call<AccessReviewStatus>({
      method: 'POST',
      path: '/apis/authorization.k8s.io/v1/subjectaccessreviews',
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: user.username,
          groups: user.groups,
          ...(user.uid !== undefined ? { uid: user.uid } : {}),
          ...(user.extra ? { extra: user.extra } : {}),
          ...target,
        },
      },
    });
    return answer.status?.allowed === true && answer.status.denied !== true;
  }
}
