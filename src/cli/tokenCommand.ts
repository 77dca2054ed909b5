import { parseArgs } from 'node:util';
import { ROLES, type Role } from '../api/access.js';
import { newToken, tokenHash } from '../api/tokenFile.js';
import { errorMessage } from '../util/errors.js';

const USAGE = `usage: leafbridge token [--name NAME] [--role read-only|read-write] [--hash]
  Makes a new bearer token for the agent's HTTP API and prints it with the entry that accepts it, for the
  file named by http.auth.tokensFile (docs/security.md). --hash reads an existing token from stdin instead.
  --name   who holds it (default: api-client), shown in the agent's refusals
  --role   read-only or read-write (default: read-only)
`;

/** `leafbridge token`: a token and its tokens-file entry (the file keeps only the SHA-256). */
export async function tokenCommand(argv: string[], stdin: () => Promise<string>): Promise<number> {
  let values: { name: string; role: string; hash: boolean; help: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        name: { type: 'string', default: 'api-client' },
        role: { type: 'string', default: 'read-only' },
        hash: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
    if (!ROLES.includes(values.role as Role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  } catch (err) {
    process.stderr.write(`token: ${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const role = values.role as Role;
  if (values.hash) {
    const token = (await stdin()).trim();
    if (token === '') {
      process.stderr.write('token: --hash reads the token from stdin; it was empty\n');
      return 2;
    }
    process.stdout.write(`- {name: ${values.name}, role: ${role}, sha256: ${tokenHash(token)}}\n`);
    return 0;
  }
  const { token, entry } = newToken(values.name, role);
  process.stdout.write(
    `token: ${token}\n` +
      '# add under `tokens:` in the http.auth.tokensFile (the agent re-reads it within a second):\n' +
      `- {name: ${entry.name}, role: ${entry.role}, sha256: ${entry.sha256}}\n`,
  );
  return 0;
}
