import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Logger } from '../util/logger.js';
import { type Route, sendJson } from './http.js';

/** The page's files (src/api/dashboard/), served under /dashboard/. Plain HTML, CSS and JS: no build step. */
const FILES = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
} as const;
type FileName = keyof typeof FILES;

/** Nothing from elsewhere: scripts, styles and connections to this agent only; no framing. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/**
 * Where the files are: beside this module (the build copies src/api/dashboard to dist/src/api/dashboard),
 * or, when running from a repository checkout whose build did not copy them, the source tree.
 */
export function dashboardDir(moduleUrl: string = import.meta.url): string | undefined {
  const beside = fileURLToPath(new URL('./dashboard/', moduleUrl));
  const source = beside.replace(/([/\\])dist\1src\1/, '$1src$1');
  return [beside, source].find((dir) => existsSync(`${dir}index.html`));
}

function loadAssets(dir: string): Map<FileName, Asset> {
  const assets = new Map<FileName, Asset>();
  for (const [name, type] of Object.entries(FILES) as [FileName, string][]) {
    const body = readFileSync(`${dir}${name}`);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`;
    assets.set(name, { type, body, gzip: gzipSync(body, { level: 9 }), etag });
  }
  return assets;
}

/**
 * The dashboard's routes: `/` redirects to `/dashboard/`, which serves the page and its two files. The
 * files are read (and gzipped) on the first request. Other paths answer the API's 404.
 */
export function dashboardRoutes(logger: Logger, dir = dashboardDir()): Record<string, Route> {
  let assets: Map<FileName, Asset> | undefined;
  let warned = false;
  const page: Route = (req, res, url) => {
    const rest = url.pathname.slice('/dashboard'.length);
    if (rest === '') return redirect(res, 'dashboard/');
    if (!rest.startsWith('/')) return notFound(res, url.pathname);
    const name = (rest === '/' ? 'index.html' : rest.slice(1)) as FileName;
    if (!(name in FILES)) return notFound(res, url.pathname);
    if (req.method !== 'GET' && req.method !== 'HEAD') return notAllowed(res);
    if (!dir) {
      if (!warned) logger.error('dashboard files not found: the build must copy src/api/dashboard to dist');
      warned = true;
      return missing(res);
    }
    assets ??= loadAssets(dir);
    const asset = assets.get(name) as Asset;
    send(res, asset, name === 'index.html', req.headers);
  };
  const root: Route = (_req, res, url) =>
    url.pathname === '/' ? redirect(res, 'dashboard/') : notFound(res, url.pathname);
  return { '/dashboard': page, '/': root };
}

function send(
  res: ServerResponse,
  asset: Asset,
  isPage: boolean,
  headers: { 'if-none-match'?: string | undefined; 'accept-encoding'?: string | undefined },
): void {
  res.setHeader('content-type', asset.type);
  res.setHeader('cache-control', 'no-cache');
  res.setHeader('etag', asset.etag);
  res.setHeader('vary', 'accept-encoding');
  res.setHeader('x-content-type-options', 'nosniff');
  if (isPage) {
    res.setHeader('content-security-policy', CSP);
    res.setHeader('referrer-policy', 'no-referrer');
  }
  if (headers['if-none-match'] === asset.etag) {
    res.writeHead(304);
    return void res.end();
  }
  const gzip = /\bgzip\b/.test(headers['accept-encoding'] ?? '');
  const body = gzip ? asset.gzip : asset.body;
  if (gzip) res.setHeader('content-encoding', 'gzip');
  res.writeHead(200, { 'content-length': body.length });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(302, { location, 'content-length': 0 });
  res.end();
}

function notFound(res: ServerResponse, path: string): void {
  sendJson(res, 404, { status: 'error', error: { code: 'NOT_FOUND', message: `no route ${path}` } });
}

function notAllowed(res: ServerResponse): void {
  res.setHeader('allow', 'GET, HEAD');
  sendJson(res, 405, { status: 'error', error: { code: 'METHOD_NOT_ALLOWED', message: 'GET or HEAD' } });
}

function missing(res: ServerResponse): void {
  sendJson(res, 500, {
    status: 'error',
    error: { code: 'DASHBOARD_MISSING', message: 'the dashboard files are not installed' },
  });
}
