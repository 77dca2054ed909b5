import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { DeviceObject, DiscoveryConfigObject } from '../discovery/types.js';

const RESOURCES = {
  devices: 'devices',
  device: 'devices',
  dev: 'devices',
  configs: 'discoveryconfigs',
  discoveryconfigs: 'discoveryconfigs',
} as const;

/** `leafbridge get devices|configs [NAME] [-o wide|json|yaml] [--server URL]`: kubectl-like output from the agent. */
export async function getCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o', default: '' },
      server: { type: 'string', default: process.env.LEAFBRIDGE_SERVER ?? 'http://127.0.0.1:8080' },
    },
  });
  const [kind, name] = positionals;
  const resource = kind ? RESOURCES[kind as keyof typeof RESOURCES] : undefined;
  if (!resource || !['', 'wide', 'json', 'yaml'].includes(values.output)) {
    process.stderr.write('usage: leafbridge get devices|configs [NAME] [-o wide|json|yaml] [--server URL]\n');
    return 2;
  }
  const url = `${values.server.replace(/\/$/, '')}/api/v1/${resource}${name ? `/${encodeURIComponent(name)}` : ''}`;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    process.stderr.write(
      `error: cannot reach the agent at ${values.server}: ${(err as Error).cause ?? (err as Error).message}\n`,
    );
    return 1;
  }
  const body = (await res.json()) as { items?: unknown[]; message?: string };
  if (!res.ok) {
    process.stderr.write(`Error from server (${res.status}): ${body.message ?? res.statusText}\n`);
    return 1;
  }
  if (values.output === 'json') process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
  else if (values.output === 'yaml') process.stdout.write(stringify(body));
  else {
    const items = (body.items ?? [body]) as (DeviceObject | DiscoveryConfigObject)[];
    const wide = values.output === 'wide';
    process.stdout.write(
      resource === 'devices'
        ? deviceTable(items as DeviceObject[], wide)
        : configTable(items as DiscoveryConfigObject[], wide),
    );
  }
  return 0;
}

export function deviceTable(items: DeviceObject[], wide: boolean, now = Date.now()): string {
  if (items.length === 0) return 'No resources found.\n';
  const head = [
    'NAME',
    'CONFIG',
    'HANDLER',
    'ONLINE',
    'NODES',
    'AGE',
    ...(wide ? ['ID', 'LAST SEEN', 'CONDITIONS'] : []),
  ];
  const rows = items.map((d) => [
    d.metadata.name,
    d.spec.configName,
    d.spec.handler,
    String(d.status.online),
    d.spec.nodes.join(','),
    age(d.metadata.creationTimestamp, now),
    ...(wide
      ? [
          d.spec.id,
          age(d.status.lastSeen, now),
          d.status.conditions
            .filter((c) => c.status !== 'True')
            .map((c) => `${c.type}=${c.reason}`)
            .join(',') || '<none>',
        ]
      : []),
  ]);
  return table([head, ...rows]);
}

function configTable(items: DiscoveryConfigObject[], wide: boolean): string {
  if (items.length === 0) return 'No resources found.\n';
  const cond = (c: DiscoveryConfigObject, type: string) => c.status.conditions.find((x) => x.type === type);
  const head = ['NAME', 'HANDLER', 'CAPACITY', 'DEVICES', 'VALID', 'RUNNING', ...(wide ? ['MESSAGE'] : [])];
  const rows = items.map((c) => [
    c.metadata.name,
    c.spec.handler.name,
    String(c.spec.capacity),
    String(c.status.devices),
    cond(c, 'Valid')?.status ?? 'Unknown',
    cond(c, 'Running')?.status ?? 'Unknown',
    ...(wide
      ? [
          c.status.conditions
            .filter((x) => x.status !== 'True')
            .map((x) => x.message)
            .join('; '),
        ]
      : []),
  ]);
  return table([head, ...rows]);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 3))).join('')).join('\n')}\n`;
}

function age(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}
