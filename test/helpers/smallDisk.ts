import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage } from '../../src/util/errors.js';

/**
 * A size-limited file system for a test: a tmpfs mounted by the test (root), or, where mounting is not
 * allowed, a tmpfs mounted inside the agent's own user + mount namespace (`unshare -rm`), reached from the
 * test through /proc/PID/root.
 */
export type SmallDiskKind = 'tmpfs' | 'unshare';

export interface SmallDisk {
  kind: SmallDiskKind;
  /** The mount point, as the agent sees it. */
  path: string;
  /** The agent's command line, wrapped so the mount exists where it runs (unchanged for `tmpfs`). */
  wrap(argv: string[]): string[];
  /** The mount point as this process reaches it (`pid`: the agent's, for `unshare`). */
  hostPath(pid: number | undefined): string;
  /** Unmounts (tmpfs) and removes the mount point; safe to call twice. */
  release(): void;
}

const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'pipe', timeout: 10_000 });

/** Which kind works here, or why none does (probed once, mounting and unmounting a 1 MB tmpfs). */
export function smallDiskSupport(): { kind: SmallDiskKind } | { skip: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lb-probe-'));
  try {
    try {
      run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
      run('umount', [dir]);
      return { kind: 'tmpfs' };
    } catch (err) {
      const tmpfs = errorMessage(err);
      try {
        run('unshare', ['-rm', '--propagation', 'private', 'sh', '-c', MOUNT_SCRIPT, dir, 'true']);
        return { kind: 'unshare' };
      } catch (err2) {
        return {
          skip: `no size-limited file system: mount -t tmpfs failed (${tmpfs.split('\n')[0]}), unshare -rm failed (${errorMessage(err2).split('\n')[0]})`,
        };
      }
    }
  } finally {
    rmdirSync(dir);
  }
}

/** `$0` the mount point, `$1` the size; then execs the rest. */
const MOUNT_SCRIPT = 'mount -t tmpfs -o "size=$1" tmpfs "$0" && shift && exec "$@"';

export function smallDisk(kind: SmallDiskKind, bytes: number): SmallDisk {
  const path = mkdtempSync(join(tmpdir(), 'lb-disk-'));
  let mounted = false;
  if (kind === 'tmpfs') {
    run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', path]);
    mounted = true;
  }
  return {
    kind,
    path,
    wrap: (argv) =>
      kind === 'tmpfs'
        ? argv
        : [
            'unshare',
            '-rm',
            '--propagation',
            'private',
            'sh',
            '-c',
            MOUNT_SCRIPT,
            path,
            String(bytes),
            ...argv,
          ],
    hostPath: (pid) => {
      if (kind === 'tmpfs') return path;
      if (pid === undefined) throw new Error('the agent is not running: its mount is out of reach');
      return `/proc/${pid}/root${path}`;
    },
    release() {
      if (mounted) {
        try {
          run('umount', [path]);
        } catch {
          run('umount', ['-l', path]); // still busy (a process not yet gone): detach it now
        }
        mounted = false;
      }
      try {
        rmdirSync(path);
      } catch {
        // already removed
      }
    },
  };
}
