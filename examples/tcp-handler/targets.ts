import { connect } from 'node:net';
import { parse } from 'yaml';

/** What a DiscoveryConfig asks this handler for: TCP endpoints to watch, and how often to look. */
export interface TcpDetails {
  targets: { host: string; port: number }[];
  intervalMs: number;
}

export class DetailsError extends Error {}

const maxTargets = 256;
const hostPort = /^([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})$/;

/**
 * The config's details as Akri hands them over: a YAML document, here `{targets: ["host:port", ...],
 * intervalMs}`. Throws a DetailsError naming every problem.
 */
export function parseDetails(yaml: string): TcpDetails {
  let doc: unknown;
  try {
    doc = parse(yaml, { maxAliasCount: 10 });
  } catch (err) {
    throw new DetailsError(`details are not YAML: ${(err as Error).message}`);
  }
  const problems: string[] = [];
  const fields = (doc ?? {}) as { targets?: unknown; intervalMs?: unknown };
  if (typeof doc !== 'object' || Array.isArray(doc)) problems.push('details must be a mapping');
  const list = Array.isArray(fields.targets) ? fields.targets : [];
  if (!Array.isArray(fields.targets) || list.length === 0) problems.push('targets: a list of host:port');
  if (list.length > maxTargets) problems.push(`targets: at most ${maxTargets}`);
  const targets = list.slice(0, maxTargets).flatMap((entry, i) => {
    const m = typeof entry === 'string' ? hostPort.exec(entry) : null;
    const port = Number(m?.[2]);
    if (m?.[1] && port >= 1 && port <= 65_535) return [{ host: m[1].replace(/^\[|\]$/g, ''), port }];
    problems.push(`targets[${i}]: not host:port`);
    return [];
  });
  const intervalMs = fields.intervalMs ?? 2_000;
  if (
    typeof intervalMs !== 'number' ||
    !Number.isInteger(intervalMs) ||
    intervalMs < 100 ||
    intervalMs > 3_600_000
  )
    problems.push('intervalMs: an integer from 100 to 3600000');
  if (problems.length > 0) throw new DetailsError(problems.join('; '));
  return { targets, intervalMs: intervalMs as number };
}

/** Whether something accepts a TCP connection at host:port within `timeoutMs`. */
export function accepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
