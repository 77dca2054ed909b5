import { Writable } from 'node:stream';
import type { DiscoveredDevice, DiscoveryContext } from '../../src/model/handler.js';
import { systemClock } from '../../src/util/clock.js';
import { createLogger } from '../../src/util/logger.js';

/** Everything a handler yielded, with times, and a way to wait for a list that satisfies a predicate. */
export interface ListRecorder {
  readonly lists: { at: number; devices: DiscoveredDevice[] }[];
  latest(): DiscoveredDevice[] | undefined;
  /** The first list (from index `after` on) that satisfies `predicate`. */
  waitFor(
    predicate: (devices: DiscoveredDevice[]) => boolean,
    timeoutMs: number,
    what: string,
    after?: number,
  ): Promise<{ at: number; devices: DiscoveredDevice[] }>;
  /** Resolves when the iterable has ended (after the context's signal aborted). */
  done: Promise<void>;
}

export function recordLists(iterable: AsyncIterable<DiscoveredDevice[]>): ListRecorder {
  const lists: { at: number; devices: DiscoveredDevice[] }[] = [];
  const waiters = new Set<() => void>();
  const done = (async () => {
    for await (const devices of iterable) {
      lists.push({ at: performance.now(), devices });
      for (const wake of waiters) wake();
    }
  })();
  return {
    lists,
    done,
    latest: () => lists.at(-1)?.devices,
    // `timeoutMs` is what the wait would take on an idle machine; the bound is never below 20 s, so a loaded
    // 2-core machine (real control planes run beside these tests) waits instead of failing. How fast
    // discovery is belongs to `npm run bench -- discovery`, not here.
    waitFor: (predicate, expectedMs, what, after = 0) =>
      new Promise((resolve, reject) => {
        const timeoutMs = Math.max(expectedMs, 20_000);
        const check = () => {
          const hit = lists.slice(after).find((l) => predicate(l.devices));
          if (!hit) return false;
          finish();
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          finish();
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for ${what}; last list: ${JSON.stringify(lists.at(-1)?.devices.map((d) => d.id))}`,
            ),
          );
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(wake);
        };
        const wake = () => void check();
        waiters.add(wake);
        check();
      }),
  };
}

/** A discovery context whose log lines are kept (as parsed JSON) so tests can look at them. */
export function testContext(
  level = 'debug',
): DiscoveryContext & { abort(): void; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const controller = new AbortController();
  return {
    logger: createLogger({ level, destination: sink }),
    clock: systemClock,
    signal: controller.signal,
    abort: () => controller.abort(),
    logs,
  };
}

/** A random uuid prefix for one test, so devices from other tests (or files) can be told apart. */
export function uuidPrefix(): string {
  const hex = () =>
    Math.floor(Math.random() * 0x10000)
      .toString(16)
      .padStart(4, '0');
  return `${hex()}${hex()}-${hex()}-4${hex().slice(1)}-8${hex().slice(1)}-`;
}

export function uuidOf(prefix: string, index: number): string {
  return `${prefix}${index.toString(16).padStart(12, '0')}`;
}

export function withPrefix(devices: DiscoveredDevice[], prefix: string): DiscoveredDevice[] {
  return devices.filter((d) => d.id.startsWith(prefix));
}

export function ids(devices: DiscoveredDevice[]): string[] {
  return devices.map((d) => d.id).sort();
}
