import { describe, expect, it } from 'vitest';
import { crlfLineEnds, resolveSettings } from '../../discovery-handlers/serial/settings.js';

describe('probe.expect: RE2 with serial line ends', () => {
  it('turns each $ outside a class into \\r?$, leaving escaped and class members alone', () => {
    expect(crlfLineEnds('^OK$')).toBe('^OK\\r?$');
    expect(crlfLineEnds('a\\$b')).toBe('a\\$b');
    expect(crlfLineEnds('[$]x')).toBe('[$]x');
    expect(crlfLineEnds('[]$]$')).toBe('[]$]\\r?$');
    expect(crlfLineEnds('[^]$]+$')).toBe('[^]$]+\\r?$');
  });

  it('matches CRLF and lone-CR replies as JavaScript did, and refuses what RE2 cannot run', () => {
    const expectOf = (source: string) =>
      resolveSettings({ probe: { write: 'x', expect: source } }).probe!.expect;
    expect(expectOf('^OK$').test('ATI\r\nOK\r\n')).toBe(true);
    expect(expectOf('^OK$').test('OK\r')).toBe(true);
    expect(expectOf('^OK$').test('NOK\r\n')).toBe(false);
    // Backreferences and lookaround need backtracking: refused with the config's error code.
    expect(() => expectOf('(a)\\1')).toThrowError(expect.objectContaining({ code: 'SERIAL_BAD_PATTERN' }));
    expect(() => expectOf('OK(?=\\r)')).toThrowError(expect.objectContaining({ code: 'SERIAL_BAD_PATTERN' }));
  });
});
