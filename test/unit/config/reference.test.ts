import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configReference } from '../../../src/config/reference.js';
import { AgentConfigSchema } from '../../../src/config/schema.js';
import { ROOT } from '../../helpers/processes.js';

describe('configuration reference', () => {
  it('docs/configuration.md is what the schema generates (run `node bin/leafbridge.js config-reference`)', () => {
    expect(readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8')).toBe(configReference());
  });

  it('lists every key of the schema', () => {
    const doc = configReference();
    for (const key of Object.keys(AgentConfigSchema.properties)) expect(doc).toContain(`| \`${key}\` |`);
    expect(doc).toContain('| `upstream.tls.ca` |');
    expect(doc).toContain('| `auth.devices[].passwordHash` |');
  });
});

describe('discovery handler reference', () => {
  it('docs/discovery-handlers.md is what the handler schemas generate (run `node bin/leafbridge.js handlers-reference`)', async () => {
    const { handlersReference } = await import('../../../src/discovery/reference.js');
    const { builtinHandlers } = await import('../../../src/builtinHandlers.js');
    expect(readFileSync(join(ROOT, 'docs/discovery-handlers.md'), 'utf8')).toBe(
      handlersReference(builtinHandlers),
    );
    for (const h of builtinHandlers) expect(handlersReference(builtinHandlers)).toContain(`## \`${h.name}\``);
  });
});
