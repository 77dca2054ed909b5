import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkDigest, digestChallenge } from './httpDigest.js';
import type { CameraModel } from './model.js';
import { snapshotJpeg } from './snapshotImage.js';

export const snapshotPath = '/onvif/snapshot';

/**
 * GET `/onvif/snapshot?profile=<token>`: a JPEG, behind HTTP Digest with the camera's credentials (when it
 * has any), as GetSnapshotUri promises. Returns the status it answered.
 */
export function serveSnapshot(model: CameraModel, req: IncomingMessage, res: ServerResponse): number {
  const answer = (status: number, headers: Record<string, string | number>, body: Buffer | string) => {
    res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(req.method === 'HEAD' ? undefined : body);
    return status;
  };
  if (req.method !== 'GET' && req.method !== 'HEAD')
    return answer(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }, 'use GET\n');
  const token = new URL(req.url ?? '/', 'http://camera').searchParams.get('profile');
  if (!model.profiles.some((p) => p.token === token))
    return answer(404, { 'Content-Type': 'text/plain' }, 'no such profile\n');
  if (model.credentials) {
    const now = Date.now();
    const result = checkDigest(req.headers.authorization, req.method, model.credentials, now);
    if (result !== 'ok') {
      const challenge = digestChallenge(now, result === 'stale');
      return answer(401, { 'WWW-Authenticate': challenge, 'Content-Type': 'text/plain' }, 'unauthorized\n');
    }
  }
  return answer(200, { 'Content-Type': 'image/jpeg', 'Cache-Control': 'no-store' }, snapshotJpeg);
}
