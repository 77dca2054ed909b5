import { readFileSync, statSync } from 'node:fs';
import { type Static, Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse } from 'yaml';
import { checkUniqueCredentials } from '../config/load.js';
import { DeviceCredentialSchema, type RawAgentConfig, UserCredentialSchema } from '../config/schema.js';
import { ConfigError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

const CredentialsSchema = T.Object(
  {
    devices: T.Array(DeviceCredentialSchema, { default: [] }),
    users: T.Array(UserCredentialSchema, { default: [] }),
  },
  { additionalProperties: false },
);
export type Credentials = Static<typeof CredentialsSchema>;

/** How often the file's modification time is looked at: a changed password takes effect within this. */
const RECHECK_MS = 1000;

/** The devices and users of a credentials file's text, checked against the config's own; throws ConfigError. */
export function parseCredentialsFile(text: string, file: string, inConfig: Credentials): Credentials {
  let doc: unknown;
  try {
    doc = parse(text) ?? {};
  } catch (err) {
    throw new ConfigError([`${file}: not YAML: ${errorMessage(err).split('\n')[0]}`]);
  }
  const value = Value.Default(CredentialsSchema, doc);
  const problems = [...Value.Errors(CredentialsSchema, value)].map(
    (e) => `${file}: ${e.path || '(root)'}: ${e.message.toLowerCase()}`,
  );
  if (problems.length > 0) throw new ConfigError(problems.slice(0, 20));
  const credentials = value as Credentials;
  checkUniqueCredentials(
    {
      devices: [...inConfig.devices, ...credentials.devices],
      users: [...inConfig.users, ...credentials.users],
    },
    problems,
    `${file} with auth`,
  );
  if (problems.length > 0) throw new ConfigError(problems);
  return credentials;
}

/**
 * `auth.credentialsFile`: more broker devices and users, read at start (a bad file stops the start) and
 * again whenever its modification time changes (looked at on a CONNECT, at most once a second), so passwords
 * are added, changed and removed without a restart and without dropping connected clients. A file that
 * turns bad later keeps the last good set and is logged once per version.
 */
export class CredentialsFile {
  private credentials: Credentials = { devices: [], users: [] };
  private mtimeMs = -1;
  private checkedAt = 0;
  private failedVersion: number | undefined;
  /** Counts the sets read, so a reader knows when to rebuild what it derived from them. */
  version = 0;

  constructor(
    private readonly file: string,
    private readonly inConfig: Pick<RawAgentConfig['auth'], 'devices' | 'users'>,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  load(): void {
    let text: string;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.file).mtimeMs;
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      throw new ConfigError([`auth.credentialsFile: cannot read ${this.file}: ${errorMessage(err)}`]);
    }
    this.credentials = parseCredentialsFile(text, this.file, this.inConfig);
    this.mtimeMs = mtimeMs;
    this.checkedAt = this.now();
    this.version++;
  }

  /** The file's devices and users, read again first if it changed. */
  current(): Credentials {
    this.refresh();
    return this.credentials;
  }

  private refresh(): void {
    const now = this.now();
    if (now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    let mtimeMs: number | undefined;
    try {
      mtimeMs = statSync(this.file).mtimeMs;
      if (mtimeMs === this.mtimeMs) return;
      this.load();
      this.failedVersion = undefined;
      const { devices, users } = this.credentials;
      this.logger.info(
        { file: this.file, devices: devices.length, users: users.length },
        'credentials file reloaded',
      );
    } catch (err) {
      const version = mtimeMs ?? -1;
      if (version !== this.failedVersion) {
        const why = err instanceof ConfigError ? err.problems.join('; ') : errorMessage(err);
        this.logger.error(
          { file: this.file, err: why },
          'credentials file not reloaded; the last good one stays',
        );
      }
      this.failedVersion = version;
    }
  }
}
