import { LeafbridgeError } from '../../src/util/errors.js';

const simpleEscapes: Readonly<Record<string, number>> = {
  r: 0x0d,
  n: 0x0a,
  t: 0x09,
  '0': 0x00,
  '\\': 0x5c,
} as const;

/**
 * Turns a probe string as written in YAML (`ID?\r\n` with literal backslashes) into bytes. Characters that
 * are already control characters (YAML double quotes decode them) pass through; other text is UTF-8.
 */
export function parseEscapes(text: string): Buffer {
  const bytes: number[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch !== '\\') {
      const codePoint = text.codePointAt(i) ?? 0;
      const char = String.fromCodePoint(codePoint);
      bytes.push(...Buffer.from(char, 'utf8'));
      i += char.length;
      continue;
    }
    i += parseOneEscape(text, i, bytes);
  }
  return Buffer.from(bytes);
}

/** Parses the escape at `text[at]` (a backslash) into `bytes`; returns how many characters it used. */
function parseOneEscape(text: string, at: number, bytes: number[]): number {
  const next = text[at + 1];
  if (next === undefined) throw escapeError(text, 'a trailing backslash');
  const simple = simpleEscapes[next];
  if (simple !== undefined) {
    bytes.push(simple);
    return 2;
  }
  if (next === 'x') {
    const hex = text.slice(at + 2, at + 4);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw escapeError(text, `\\x needs two hex digits, got "${hex}"`);
    bytes.push(Number.parseInt(hex, 16));
    return 4;
  }
  throw escapeError(text, `unknown escape \\${next}`);
}

function escapeError(text: string, problem: string): LeafbridgeError {
  return new LeafbridgeError('SERIAL_BAD_ESCAPE', `probe.write ${JSON.stringify(text)}: ${problem}`);
}

/** Shows received bytes in logs and properties: printable ASCII kept, the rest as \xHH, \r, \n. */
export function printableBytes(bytes: Buffer, max = 256): string {
  let out = '';
  for (const b of bytes.subarray(0, max)) {
    if (b === 0x0d) out += '\\r';
    else if (b === 0x0a) out += '\\n';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return bytes.length > max ? `${out}…` : out;
}
