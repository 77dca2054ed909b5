/**
 * A gate in front of some of a test server's requests: each request it admits waits, unanswered, until the
 * test lets it through. While parked a request is in flight for its client, so `waiting` is how many of
 * those requests the client has in flight now and `peak` the most it ever had at once — the figure a
 * concurrency limit promises about. `open()` lets everything through and parks nothing more.
 */
export class RequestGate<R> {
  private readonly parked: (() => void)[] = [];
  private opened = false;
  /** The most requests parked at once since the gate was made. */
  peak = 0;
  /** Requests that have passed the gate (released, or admitted after it opened). */
  passed = 0;

  constructor(readonly admits: (request: R) => boolean) {}

  /** Requests parked now. */
  get waiting(): number {
    return this.parked.length;
  }

  /** Resolves when the request may go on: at once when the gate is open. */
  park(): Promise<void> {
    if (this.opened) {
      this.passed++;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.parked.push(() => {
        this.passed++;
        resolve();
      });
      this.peak = Math.max(this.peak, this.parked.length);
    });
  }

  /** Lets the `n` oldest parked requests go on; returns how many that was. */
  release(n = 1): number {
    const go = this.parked.splice(0, n);
    for (const resume of go) resume();
    return go.length;
  }

  /** Lets every parked request go on, and every later one pass without waiting. */
  open(): void {
    this.opened = true;
    this.release(this.parked.length);
  }
}
