import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DiscoveryManager } from '../discovery/manager.js';
import type { DeviceRegistry } from '../discovery/registry.js';
import { API_VERSION } from '../discovery/types.js';
import { sendJson } from './http.js';

function notFound(res: ServerResponse, what: string): void {
  sendJson(res, 404, {
    apiVersion: 'v1',
    kind: 'Status',
    status: 'Failure',
    reason: 'NotFound',
    code: 404,
    message: `${what} not found`,
  });
}

/** `GET /api/v1/devices[/{name}]` and `GET /api/v1/discoveryconfigs[/{name}]`: Kubernetes-shaped objects. */
export function devicesApi(registry: DeviceRegistry, discovery: DiscoveryManager) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    const [, , , collection, name, ...rest] = url.pathname.split('/');
    if (rest.length > 0) return notFound(res, url.pathname);
    if (collection === 'devices') {
      if (!name)
        return sendJson(res, 200, { apiVersion: API_VERSION, kind: 'DeviceList', items: registry.list() });
      const device = registry.get(decodeURIComponent(name));
      return device ? sendJson(res, 200, device) : notFound(res, `devices "${name}"`);
    }
    if (collection === 'discoveryconfigs') {
      const configs = discovery.configs();
      if (!name)
        return sendJson(res, 200, { apiVersion: API_VERSION, kind: 'DiscoveryConfigList', items: configs });
      const config = configs.find((c) => c.metadata.name === decodeURIComponent(name));
      return config ? sendJson(res, 200, config) : notFound(res, `discoveryconfigs "${name}"`);
    }
    notFound(res, url.pathname);
  };
}
