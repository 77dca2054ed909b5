import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface UdpSocketStats {
  /** Local address, e.g. 239.255.255.250:3702. */
  local: string;
  /** Datagrams the kernel dropped for this socket (its receive queue was full), since it was opened. */
  drops: number;
  /** Bytes waiting in its receive queue now. */
  rxQueueBytes: number;
}

/** The IPv4 UDP sockets a process holds, with the kernel's per-socket drop counts (/proc/net/udp). */
export function udpSockets(pid: number): UdpSocketStats[] {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const rows = readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1);
  const out: UdpSocketStats[] = [];
  for (const row of rows) {
    const f = row.trim().split(/\s+/);
    if (f.length < 13 || !inodes.has(f[9] as string)) continue;
    out.push({
      local: hexAddress(f[1] as string),
      drops: Number(f[12]),
      rxQueueBytes: Number.parseInt((f[4] as string).split(':')[1] ?? '0', 16),
    });
  }
  return out.sort((a, b) => a.local.localeCompare(b.local));
}

/** `0100007F:0E76` (little-endian IPv4, big-endian port) → `127.0.0.1:3702`. */
function hexAddress(hex: string): string {
  const [ip = '', port = ''] = hex.split(':');
  const bytes = [6, 4, 2, 0].map((i) => Number.parseInt(ip.slice(i, i + 2), 16));
  return `${bytes.join('.')}:${Number.parseInt(port, 16)}`;
}
