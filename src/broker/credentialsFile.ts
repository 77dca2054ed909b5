import { type Static, Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse } from 'yaml';
import { checkUniqueCredentials } from '../config/load.js';
import { DeviceCredentialSchema, type RawAgentConfig, UserCredentialSchema } from '../config/schema.js';
import { ConfigError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { ReloadedFile } from '../util/reloadedFile.js';

const CredentialsSchema = T.Object(
  {
    devices: T.Array(DeviceCredentialSchema, { default: [] }),
    users: T.Array(UserCredentialSchema, { default: [] }),
  },
  { additionalProperties: false },
);
export type Credentials = Static<typeof CredentialsSchema>;

/** How often the file's modification time is looked at: a changed password takes effect within this. */
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
  private readonly reloaded: ReloadedFile<Credentials>;

  constructor(
    file: string,
    inConfig: Pick<RawAgentConfig['auth'], 'devices' | 'users'>,
    logger: Logger,
    now: () => number = Date.now,
  ) {
    this.reloaded = new ReloadedFile({
      file,
      key: 'auth.credentialsFile',
      what: 'credentials file',
      parse: (text) => parseCredentialsFile(text, file, inConfig),
      summary: ({ devices, users }) => ({ devices: devices.length, users: users.length }),
      logger,
      now,
    });
  }

  /** Counts the sets read, so a reader knows when to rebuild what it derived from them. */
  get version(): number {
    return this.reloaded.version;
  }

  /** Reads the file; throws ConfigError when it cannot be read or is not valid. */
  load(): void {
    this.reloaded.load();
  }

  /** The file's devices and users, read again first if it changed. */
  current(): Credentials {
    return this.reloaded.current();
  }
}
