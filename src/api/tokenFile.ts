import { createHash, randomBytes } from 'node:crypto';
import { parse } from 'yaml';
import { ConfigError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { ReloadedFile } from '../util/reloadedFile.js';
import { ROLES, type Role } from './access.js';

/** One accepted token: who it stands for, what it may do, and the SHA-256 of the token (never the token). */
export interface TokenEntry {
  name: string;
  role: Role;
  sha256: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** How often the file's modification time is looked at: a rotated token takes effect within this. */
/** A new random token (256 bits) and the entry that accepts it. */
export function newToken(name: string, role: Role): { token: string; entry: TokenEntry } {
  const token = `lbt_${randomBytes(32).toString('base64url')}`;
  return { token, entry: { name, role, sha256: tokenHash(token) } };
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The entries of a tokens file's text; throws ConfigError naming each bad entry. */
export function parseTokenFile(text: string, file: string): TokenEntry[] {
  let doc: unknown;
  try {
    doc = parse(text) ?? {};
  } catch (err) {
    throw new ConfigError([`${file}: not YAML: ${errorMessage(err).split('\n')[0]}`]);
  }
  const list = (doc as { tokens?: unknown }).tokens ?? [];
  if (!Array.isArray(list)) throw new ConfigError([`${file}: tokens: must be a list`]);
  const problems: string[] = [];
  const entries: TokenEntry[] = [];
  list.forEach((raw: unknown, i) => {
    const e = (raw ?? {}) as Record<string, unknown>;
    const at = `${file}: tokens[${i}]`;
    if (typeof e.name !== 'string' || e.name === '') problems.push(`${at}.name: must be a non-empty string`);
    if (!ROLES.includes(e.role as Role)) problems.push(`${at}.role: must be one of ${ROLES.join(', ')}`);
    if (typeof e.sha256 !== 'string' || !SHA256_HEX.test(e.sha256))
      problems.push(`${at}.sha256: must be 64 lowercase hex digits (\`leafbridge token\` prints it)`);
    else entries.push({ name: String(e.name), role: e.role as Role, sha256: e.sha256 });
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return entries;
}

/**
 * The standalone tokens file (`http.auth.tokensFile`): read at start (a bad file stops the start), then
 * read again whenever its modification time changes, so tokens are added and revoked without a restart.
 * A file that turns bad later keeps the last good set and is logged.
 */
export class TokenFile {
  private readonly reloaded: ReloadedFile<Map<string, TokenEntry>>;

  constructor(file: string, logger: Logger, now: () => number = Date.now) {
    this.reloaded = new ReloadedFile({
      file,
      key: 'http.auth.tokensFile',
      what: 'tokens file',
      parse: (text) => new Map(parseTokenFile(text, file).map((e) => [e.sha256, e])),
      summary: (byHash) => ({ tokens: byHash.size }),
      logger,
      now,
    });
  }

  /** Reads the file; throws ConfigError when it cannot be read or is not valid. */
  load(): void {
    this.reloaded.load();
  }

  /** The entry for this token, if the file has one. */
  match(token: string): TokenEntry | undefined {
    return this.reloaded.current().get(tokenHash(token));
  }
}
