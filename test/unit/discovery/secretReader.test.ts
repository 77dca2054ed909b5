import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { secretReader } from '../../../src/discovery/secretReader.js';
import { tempDir } from '../../helpers/processes.js';

describe('secretReader without a cluster', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  it('reads dir/NAME/KEY without its final newline, and names a missing one without any value', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    mkdirSync(join(dir.path, 'camera'));
    writeFileSync(join(dir.path, 'camera', 'password'), 's3cret\r\n');
    writeFileSync(join(dir.path, 'camera', 'username'), 'admin');
    const read = await secretReader({ dir: dir.path, namespace: 'default' });
    expect(await read({ name: 'camera', key: 'password' })).toBe('s3cret');
    expect(await read({ name: 'camera', key: 'username' })).toBe('admin');
    await expect(read({ name: 'camera', key: 'token' })).rejects.toMatchObject({
      code: 'SECRET_UNREADABLE',
      message: `secret camera/token: cannot read it under ${dir.path} (ENOENT)`,
    });
  });
});
