import { describe, expect, it } from 'vitest';
import { resolveSecretRefs, type SecretKeyRef } from '../../../src/util/secretRef.js';

describe('<field>SecretRef in handler details', () => {
  const read = async (ref: SecretKeyRef) => `value of ${ref.name}/${ref.key}`;

  it('is replaced by <field> with the value, at any depth; the rest is copied as it is', async () => {
    const details = {
      interface: 'eth1',
      credentials: {
        default: { username: 'a', passwordSecretRef: { name: 'cams', key: 'password' } },
        devices: { x: { username: 'b', password: 'inline' } },
      },
      list: [{ tokenSecretRef: { name: 's', key: 'k' } }],
    };
    expect(await resolveSecretRefs(details, read)).toEqual({
      interface: 'eth1',
      credentials: {
        default: { username: 'a', password: 'value of cams/password' },
        devices: { x: { username: 'b', password: 'inline' } },
      },
      list: [{ token: 'value of s/k' }],
    });
    // The input is left alone: what is stored and served keeps the reference, not the value.
    expect(details.credentials.default).toHaveProperty('passwordSecretRef');
  });

  it('refuses both forms at once, and passes the reader’s failure through', async () => {
    await expect(
      resolveSecretRefs({ password: 'x', passwordSecretRef: { name: 'a', key: 'b' } }, read),
    ).rejects.toMatchObject({ code: 'SECRET_CONFLICT' });
    const missing = async () => {
      throw new Error('secret a/b: not found');
    };
    await expect(resolveSecretRefs({ passwordSecretRef: { name: 'a', key: 'b' } }, missing)).rejects.toThrow(
      'secret a/b: not found',
    );
  });
});

describe('inline passwords in DiscoveryConfigs', () => {
  it('are refused by the agent with a pointer to passwordSecretRef; a reference is accepted', async () => {
    const { detailsProblems } = await import('../../../src/model/discoveryConfigs.js');
    const { builtinHandlers } = await import('../../../src/builtinHandlers.js');
    const onvif = builtinHandlers.find((h) => h.name === 'onvif')!;
    const mqtt = builtinHandlers.find((h) => h.name === 'mqtt')!;
    expect(
      detailsProblems(onvif, {
        interface: 'lo',
        credentials: { default: { username: 'a', password: 'pw' } },
      }),
    ).toEqual([
      '.credentials.default.password: an inline password is refused; give passwordSecretRef: {name, key} (docs/security.md)',
    ]);
    expect(detailsProblems(mqtt, { username: 'u', password: 'pw' })).toHaveLength(1);
    expect(
      detailsProblems(onvif, {
        interface: 'lo',
        credentials: { default: { username: 'a', passwordSecretRef: { name: 'cams', key: 'pw' } } },
      }),
    ).toEqual([]);
  });
});

describe('secret references standalone (secrets.dir/NAME/KEY)', () => {
  it('refuse a name with / or .., and a key with /: the lookup cannot leave secrets.dir', async () => {
    const { detailsProblems } = await import('../../../src/model/discoveryConfigs.js');
    const { builtinHandlers } = await import('../../../src/builtinHandlers.js');
    const mqtt = builtinHandlers.find((h) => h.name === 'mqtt')!;
    const problems = (ref: { name: string; key: string }) =>
      detailsProblems(mqtt, { username: 'u', passwordSecretRef: ref });
    for (const name of ['../etc', 'a/b', '..', '/etc'])
      expect(problems({ name, key: 'password' }), name).toEqual([
        expect.stringMatching(/^\.passwordSecretRef\.name: /),
      ]);
    for (const key of ['a/b', '../shadow', '/etc'])
      expect(problems({ name: 'mqtt', key }), key).toEqual([
        expect.stringMatching(/^\.passwordSecretRef\.key: /),
      ]);
    expect(problems({ name: 'mqtt-broker', key: 'pass.word_1' })).toEqual([]);
  });
});
