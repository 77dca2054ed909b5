/** Errors carry a stable `code` for callers and logs, and the `cause` they wrap. */
export class LeafbridgeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

export class ConfigError extends LeafbridgeError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

export class PayloadError extends LeafbridgeError {}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
