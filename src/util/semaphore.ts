/** At most `limit` tasks at once (the limit may change); the others queue in order. */
export class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private limit: number) {}

  setLimit(limit: number): void {
    this.limit = limit;
    while (this.active < this.limit && this.queue.length > 0) {
      this.active++;
      this.queue.shift()?.();
    }
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      if (this.active < this.limit && this.queue.length > 0) {
        this.active++; // handed straight to the next in line
        this.queue.shift()?.();
      }
    }
  }
}
