import { RE2JS } from 're2js';
import { LeafbridgeError } from './errors.js';

/** Where a match is in the text: `index` and `length` in UTF-16 code units, as String methods count. */
export interface MatchSpan {
  index: number;
  length: number;
}

/**
 * A regular expression from untrusted input (a DiscoveryConfig), run by RE2's automaton (re2js, pure
 * JavaScript: no native build) in time linear in the text, whatever the pattern: `(a+)+$` cannot stall the
 * agent as it stalls V8's backtracking engine. RE2 syntax: no backreferences, no lookaround.
 */
export class LinearRegex {
  private constructor(private readonly re: RE2JS) {}

  /** Throws a LeafbridgeError (`PATTERN_INVALID`) naming the problem; `multiline`: ^ and $ at line ends. */
  static compile(source: string, options: { multiline?: boolean; dotAll?: boolean } = {}): LinearRegex {
    const flags = (options.multiline ? RE2JS.MULTILINE : 0) | (options.dotAll ? RE2JS.DOTALL : 0);
    try {
      return new LinearRegex(RE2JS.compile(source, flags));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new LeafbridgeError('PATTERN_INVALID', `${JSON.stringify(source)}: ${why}`, { cause: err });
    }
  }

  test(text: string): boolean {
    return this.re.matcher(text).find();
  }

  /** The first match, or null. */
  exec(text: string): MatchSpan | null {
    const m = this.re.matcher(text);
    if (!m.find()) return null;
    return { index: m.start(), length: m.end() - m.start() };
  }
}
