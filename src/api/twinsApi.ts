import type { Twin } from '../sync/twins.js';
import { type Route, sendJson } from './http.js';

export interface TwinSource {
  devices(): string[];
  get(device: string): Twin;
}

const PREFIX = '/api/v1/twins';

/**
 * Read-only device twins, as the agent keeps them: `GET /api/v1/twins` (every device with a twin) and
 * `GET /api/v1/twins/{id}` (the MQTT device id, URL-encoded). Answers `{device, reported, reportedVersion,
 * desired, desiredVersion}`; twins change through MQTT only.
 */
export function twinsApi(twins: TwinSource): Route {
  return (req, res, url) => {
    const rest = url.pathname.slice(PREFIX.length);
    if (rest !== '' && rest !== '/' && !rest.startsWith('/')) return notFound(res, url.pathname);
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      return sendJson(res, 405, {
        status: 'error',
        error: { code: 'METHOD_NOT_ALLOWED', message: 'twins are read-only here; they change through MQTT' },
      });
    }
    if (rest === '' || rest === '/') {
      const items = twins.devices().map((device) => ({ device, ...twins.get(device) }));
      return sendJson(res, 200, { items });
    }
    let device: string;
    try {
      device = decodeURIComponent(rest.slice(1));
    } catch {
      return sendJson(res, 400, { status: 'error', error: { code: 'BAD_REQUEST', message: 'malformed id' } });
    }
    const twin = twins.get(device);
    if (twin.reportedVersion === 0 && twin.desiredVersion === 0) return notFound(res, `twin of ${device}`);
    sendJson(res, 200, { device, ...twin });
  };
}

function notFound(res: Parameters<Route>[1], what: string): void {
  sendJson(res, 404, { status: 'error', error: { code: 'NOT_FOUND', message: `no ${what}` } });
}
