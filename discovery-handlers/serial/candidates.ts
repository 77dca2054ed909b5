import { lstat, realpath, stat } from 'node:fs/promises';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { expandGlob } from './glob.js';
import { splitDevT } from './sysfs.js';

/** A character device matched by one of the globs. */
export interface Candidate {
  /** The path as matched (a symlink such as /dev/serial/by-id/..., or the node itself). */
  path: string;
  /** The device node it resolves to. */
  realPath: string;
  major: number;
  minor: number;
  /** Changes when the node or its symlink is recreated, so a re-plugged port is probed afresh. */
  key: string;
}

/** Every character device the globs match, one per device node (the first glob and path win). */
export async function findCandidates(globs: readonly string[], logger: Logger): Promise<Candidate[]> {
  const byRealPath = new Map<string, Candidate>();
  for (const glob of globs) {
    for (const path of await expandGlob(glob)) {
      const candidate = await inspectPath(path, logger);
      if (candidate && !byRealPath.has(candidate.realPath)) byRealPath.set(candidate.realPath, candidate);
    }
  }
  return [...byRealPath.values()];
}

async function inspectPath(path: string, logger: Logger): Promise<Candidate | undefined> {
  try {
    const link = await lstat(path, { bigint: true });
    const realPath = await realpath(path);
    const node = await stat(realPath, { bigint: true });
    if (!node.isCharacterDevice()) {
      logger.debug({ path, realPath }, 'not a character device, skipped');
      return undefined;
    }
    const { major, minor } = splitDevT(node.rdev);
    const key = [realPath, node.rdev, node.ino, node.ctimeNs, link.ino, link.ctimeNs].join('|');
    return { path, realPath, major, minor, key };
  } catch (err) {
    // Dangling symlinks (a device pulled, socat killed) and races with removal land here.
    logger.debug({ path, err: errorMessage(err) }, 'path not usable, skipped');
    return undefined;
  }
}
