import { describe, expect, it } from 'vitest';
import { parseTokenFile, tokenHash } from '../../../src/api/tokenFile.js';
import { tokenCommand } from '../../../src/cli/tokenCommand.js';
import { captureOutput } from '../../helpers/wait.js';

const run = (argv: string[], stdin = '') =>
  captureOutput(() => tokenCommand(argv, async () => stdin), 5000, `leafbridge token ${argv.join(' ')}`);

describe('leafbridge token', () => {
  it('prints a new 256-bit token and the tokens-file entry that accepts it, and only its hash', async () => {
    const made = await run(['--name', 'ops', '--role', 'read-write']);
    expect(made.code).toBe(0);
    const token = /^token: (\S+)$/m.exec(made.out)?.[1] ?? '';
    // lbt_ and 32 random bytes in base64url (43 characters).
    expect(token).toMatch(/^lbt_[A-Za-z0-9_-]{43}$/);
    const entryLine = made.out.split('\n').find((l) => l.startsWith('- {'));
    const [entry] = parseTokenFile(`tokens:\n  ${entryLine}\n`, 'tokens.yaml');
    expect(entry).toEqual({ name: 'ops', role: 'read-write', sha256: tokenHash(token) });
    expect(made.out.split('\n').filter((l) => l.includes(token))).toHaveLength(1); // the entry holds no token

    const other = await run([]);
    expect(other.out).not.toContain(token);
    expect(other.out).toContain('{name: api-client, role: read-only, sha256: ');
  });

  it('--hash prints the entry for a token read from stdin; a bad role or an empty stdin is exit 2', async () => {
    const hashed = await run(['--hash', '--name', 'mine', '--role', 'read-only'], 'my-own-token\n');
    expect(hashed).toEqual({
      code: 0,
      out: `- {name: mine, role: read-only, sha256: ${tokenHash('my-own-token')}}\n`,
      err: '',
    });
    expect((await run(['--role', 'admin'])).code).toBe(2);
    expect((await run(['--hash'], '\n')).code).toBe(2);
  });
});
