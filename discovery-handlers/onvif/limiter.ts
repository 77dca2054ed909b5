/** Runs at most `concurrency` tasks at once; the rest wait in order. */
export class Limiter {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly concurrency: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }

  /** Lets every waiting task start (used at shutdown, when tasks return at once). */
  drain(): void {
    for (const resolve of this.queue.splice(0)) resolve();
  }
}
