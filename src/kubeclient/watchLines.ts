/**
 * The events of a watch stream, one JSON object per line (`{"type": "ADDED", "object": {...}}`), from the
 * chunks as they arrive. A line that is not JSON, or not an event, is skipped: the watch goes on.
 */
export class WatchLines {
  private rest = '';

  constructor(private readonly onEvent: (type: string, object: unknown) => void) {}

  push(chunk: string): void {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  /** The stream ended: a last line without a newline still counts. */
  end(): void {
    const last = this.rest;
    this.rest = '';
    this.line(last);
  }

  private line(line: string): void {
    if (line.trim() === '') return;
    let event: { type?: unknown; object?: unknown };
    try {
      event = JSON.parse(line) as { type?: unknown; object?: unknown };
    } catch {
      return;
    }
    if (typeof event?.type === 'string') this.onEvent(event.type, event.object);
  }
}
