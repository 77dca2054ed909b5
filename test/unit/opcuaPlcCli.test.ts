import { describe, expect, it } from 'vitest';
import { parsePlcFlags } from '../../firmware-stubs/plc/cli.js';
import { ConfigError } from '../../src/util/errors.js';

describe('leafbridge simulate plc flags', () => {
  it('has defaults: one PLC on a free port, both security modes', () => {
    expect(parsePlcFlags([])).toEqual({
      port: 0,
      count: 1,
      name: 'plc',
      host: '127.0.0.1',
      security: ['None', 'SignAndEncrypt'],
    });
  });

  it('reads every flag', () => {
    expect(
      parsePlcFlags([
        '--port',
        '4840',
        '--count',
        '3',
        '--name',
        'press',
        '--lds',
        'opc.tcp://127.0.0.1:4841',
        '--security',
        'SignAndEncrypt',
      ]),
    ).toEqual({
      port: 4840,
      count: 3,
      name: 'press',
      host: '127.0.0.1',
      lds: 'opc.tcp://127.0.0.1:4841',
      security: ['SignAndEncrypt'],
    });
  });

  it('reports every bad flag at once, before anything starts', () => {
    let error: unknown;
    try {
      parsePlcFlags(['--port', '70000', '--count', 'two', '--lds', 'http://x', '--security', 'Sign']);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      '--port: must be an integer from 0 to 65535, got "70000"',
      '--count: must be an integer from 1 to 100, got "two"',
      '--security: each of "Sign" must be None or SignAndEncrypt',
      '--lds: must be an opc.tcp:// URL',
    ]);
    expect(() => parsePlcFlags(['--colour', 'red'])).toThrow(ConfigError);
  });
});
