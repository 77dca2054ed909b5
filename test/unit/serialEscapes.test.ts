import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { parseEscapes, printableBytes } from '../../discovery-handlers/serial/escapes.js';
import { ReplyCollector } from '../../discovery-handlers/serial/replyCollector.js';
import { SerialDetailsSchema } from '../../discovery-handlers/serial/schema.js';
import { resolveSettings } from '../../discovery-handlers/serial/settings.js';
import { LinearRegex } from '../../src/util/linearRegex.js';

describe('parseEscapes', () => {
  it('turns \\r \\n \\t \\0 \\\\ and \\xHH into bytes', () => {
    expect(parseEscapes('ID?\\r\\n')).toEqual(Buffer.from('ID?\r\n'));
    expect(parseEscapes('a\\tb\\0c\\\\d')).toEqual(Buffer.from([0x61, 9, 0x62, 0, 0x63, 0x5c, 0x64]));
    expect(parseEscapes('\\x02\\xFFz')).toEqual(Buffer.from([2, 0xff, 0x7a]));
  });

  it('passes real control characters (YAML double quotes) and UTF-8 text through', () => {
    expect(parseEscapes('ATI\r')).toEqual(Buffer.from('ATI\r'));
    expect(parseEscapes('°C😀')).toEqual(Buffer.from('°C😀', 'utf8'));
  });

  it('rejects what it cannot parse, with a code', () => {
    expect(() => parseEscapes('x\\')).toThrow(/trailing backslash/);
    expect(() => parseEscapes('\\q')).toThrow(/unknown escape \\q/);
    expect(() => parseEscapes('\\x4')).toThrow(/two hex digits/);
    expect(() => parseEscapes('\\xZZ')).toThrowError(expect.objectContaining({ code: 'SERIAL_BAD_ESCAPE' }));
  });

  it('prints bytes safely for logs', () => {
    expect(printableBytes(Buffer.from('OK\r\n\x00\xff', 'latin1'))).toBe('OK\\r\\n\\x00\\xff');
    expect(printableBytes(Buffer.from('abcdef'), 3)).toBe('abc…');
  });
});

describe('ReplyCollector', () => {
  it('matches across chunks and returns the whole matching line', () => {
    const c = new ReplyCollector(64, LinearRegex.compile('^LEAFBRIDGE-SENSOR,', { multiline: true }));
    expect(c.push(Buffer.from('T=21.5\r\nLEAFBRIDGE-SEN'))).toBe('waiting');
    expect(c.push(Buffer.from('SOR,TH-1,'))).toBe('partial');
    expect(c.push(Buffer.from('42\r\nT=2'))).toBe('matched');
    expect(c.reply()).toBe('LEAFBRIDGE-SENSOR,TH-1,42');
  });

  it('a pattern that includes the line end still yields the line without it', () => {
    const c = new ReplyCollector(64, LinearRegex.compile('OK\r\n'));
    expect(c.push(Buffer.from('ATI\r\nOK\r\n'))).toBe('matched');
    expect(c.reply()).toBe('OK');
  });

  it('never holds more than maxBytes, however much arrives', () => {
    const c = new ReplyCollector(16, LinearRegex.compile('never'));
    expect(c.push(Buffer.alloc(10, 0x41))).toBe('waiting');
    expect(c.push(Buffer.alloc(100_000, 0x41))).toBe('overflow');
    expect(c.bytes).toBe(16);
  });

  it('matches binary garbage as Latin-1 without throwing', () => {
    const binaryPattern = ['\\xff', '\\x00', 'OK'].join('');
    const c = new ReplyCollector(32, LinearRegex.compile(binaryPattern));
    expect(c.push(Buffer.from([0x80, 0xff, 0x00, 0x4f, 0x4b]))).toBe('partial');
    expect(c.reply()).toBe('\\x80\\xff\\x00OK');
  });
});

describe('serial details', () => {
  it('every property in the schema carries a description', () => {
    const missing: string[] = [];
    const walk = (schema: Record<string, unknown>, path: string) => {
      if (path && typeof schema.description !== 'string') missing.push(path);
      const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
      for (const [name, child] of Object.entries(props)) walk(child, `${path}.${name}`);
    };
    walk(SerialDetailsSchema as unknown as Record<string, unknown>, '');
    expect(missing).toEqual([]);
  });

  it('validates a full config and rejects unknown keys and relative paths', () => {
    const good = {
      paths: ['/dev/ttyUSB*', '/dev/serial/by-id/*'],
      vendorIds: { include: ['0403'] },
      manufacturers: { exclude: ['Prolific'] },
      probe: { write: 'ID?\\r\\n', expect: '^LEAFBRIDGE-SENSOR,', timeoutMs: 500 },
      rescanIntervalMs: 60_000,
    };
    expect(Value.Check(SerialDetailsSchema, good)).toBe(true);
    expect(Value.Check(SerialDetailsSchema, { paths: ['dev/tty*'] })).toBe(false);
    expect(Value.Check(SerialDetailsSchema, { pathz: ['/dev/tty*'] })).toBe(false);
    expect(Value.Check(SerialDetailsSchema, { probe: { write: 'x', expect: 'y', timeoutMs: 10 } })).toBe(
      false,
    );
  });

  it('applies defaults and compiles the probe', () => {
    const s = resolveSettings({ probe: { write: 'ATI\\r', expect: '^OK$' } });
    expect(s.paths).toEqual(['/dev/ttyUSB*', '/dev/ttyACM*']);
    expect(s.rescanIntervalMs).toBe(30_000);
    expect(s.probe).toMatchObject({
      write: Buffer.from('ATI\r'),
      timeoutMs: 1_000,
      baudRate: 9_600,
      maxBytes: 4_096,
    });
    expect(s.probe?.expect.test('ERR\r\nOK\r\n')).toBe(true);
  });

  it('refuses a probe that cannot work', () => {
    expect(() => resolveSettings({ probe: { write: 'x', expect: '[' } })).toThrowError(
      expect.objectContaining({ code: 'SERIAL_BAD_PATTERN' }),
    );
    expect(() => resolveSettings({ probe: { write: '\\y', expect: 'x' } })).toThrowError(
      expect.objectContaining({ code: 'SERIAL_BAD_ESCAPE' }),
    );
  });
});
