/**
 * Turns "something changed" notifications into an async sequence of snapshots. Changes that arrive while
 * the consumer is busy are coalesced, and a snapshot equal to the last one yielded is skipped.
 */
export class ChangeFeed<T> {
  private pending = false;
  private wake: (() => void) | undefined;

  notify(): void {
    this.pending = true;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *snapshots(take: () => T, signal: AbortSignal): AsyncGenerator<T> {
    let last: string | undefined;
    while (!signal.aborted) {
      if (!this.pending) await this.waitForChange(signal);
      if (signal.aborted) return;
      this.pending = false;
      const snapshot = take();
      const key = JSON.stringify(snapshot);
      if (key === last) continue;
      last = key;
      yield snapshot;
    }
  }

  private waitForChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
