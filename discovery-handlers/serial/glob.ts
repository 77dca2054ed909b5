import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LinearRegex } from '../../src/util/linearRegex.js';

const wildcard = /[*?[]/;

export function hasWildcard(segment: string): boolean {
  return wildcard.test(segment);
}

/**
 * A shell-style pattern for one path segment (`*`, `?`, `[abc]`, `[!abc]`, `[a-z]`), matched in linear time
 * (a config's `*a*a*a*b` against a long name must not backtrack).
 */
export function segmentRegExp(segment: string): LinearRegex {
  let source = '';
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i] as string;
    if (ch === '*') source += '[^/]*';
    else if (ch === '?') source += '[^/]';
    else if (ch === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) source += '\\[';
      else {
        source += classSource(segment.slice(i + 1, close));
        i = close;
      }
    } else source += ch.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  }
  return LinearRegex.compile(`^${source}$`);
}

function classSource(body: string): string {
  const negated = body.startsWith('!') || body.startsWith('^');
  const chars = (negated ? body.slice(1) : body).replace(/[\\\]^]/g, '\\$&');
  return negated ? `[^/${chars}]` : `[${chars}]`;
}

/** The directory a glob starts in: its longest leading part without wildcards (`/dev` for `/dev/tty*`). */
export function globBaseDir(pattern: string): string {
  const segments = pattern.split('/');
  const firstWild = segments.findIndex(hasWildcard);
  if (firstWild < 0) return dirname(pattern);
  return segments.slice(0, firstWild).join('/') || '/';
}

/** Paths matching an absolute glob, sorted. Leading dots are matched only by a literal dot, as in a shell. */
export async function expandGlob(pattern: string): Promise<string[]> {
  const segments = pattern.split('/').filter((s) => s !== '');
  let current = ['/'];
  for (const segment of segments) {
    current = await stepSegment(current, segment);
    if (current.length === 0) break;
  }
  return current.sort();
}

async function stepSegment(dirs: string[], segment: string): Promise<string[]> {
  if (!hasWildcard(segment)) return dirs.map((d) => join(d, segment));
  const re = segmentRegExp(segment);
  const out: string[] = [];
  for (const dir of dirs) {
    for (const name of await listDir(dir)) {
      if (name.startsWith('.') && !segment.startsWith('.')) continue;
      if (re.test(name)) out.push(join(dir, name));
    }
  }
  return out;
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
