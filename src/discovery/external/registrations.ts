import type { RegisterDiscoveryHandlerRequest } from './protocol.js';

/** One handler's registration: where to call it, and whether its devices are shared between nodes. */
export interface Registration {
  name: string;
  endpoint: string;
  endpointType: string;
  shared: boolean;
  /** Grows with every registration of any name: a newer one has a larger number. */
  seq: number;
}

type Listener = (r: Registration) => void;

/**
 * The external handlers registered on this node, one per name. A second registration under a name replaces
 * the first (last wins): a handler that restarts, or moves its socket, is then used at once, without waiting
 * until the agent notices the old one is gone; the old endpoint is no longer called. Whoever can reach the
 * registration socket can do this, so the socket's directory is the credential (docs/discovery-handlers.md).
 */
export class HandlerRegistrations {
  private readonly byName = new Map<string, Registration>();
  private readonly listeners = new Set<Listener>();
  private seq = 0;

  constructor(private readonly names: readonly string[]) {}

  /** Whether a handler may register under `name` (the agent's config lists the names). */
  accepts(name: string): boolean {
    return this.names.includes(name);
  }

  register(r: RegisterDiscoveryHandlerRequest): Registration {
    const registration: Registration = {
      name: r.name,
      endpoint: r.endpoint,
      endpointType: r.endpoint_type,
      shared: r.shared,
      seq: ++this.seq,
    };
    this.byName.set(r.name, registration);
    for (const l of [...this.listeners]) l(registration);
    return registration;
  }

  get(name: string): Registration | undefined {
    return this.byName.get(name);
  }

  /** Calls `listener` with each later registration of `name`; returns the function that stops it. */
  watch(name: string, listener: Listener): () => void {
    const l: Listener = (r) => {
      if (r.name === name) listener(r);
    };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** The first registration of `name` newer than `afterSeq`: at once if there is one; undefined on abort. */
  next(name: string, afterSeq: number, signal: AbortSignal): Promise<Registration | undefined> {
    const now = this.byName.get(name);
    if (now && now.seq > afterSeq) return Promise.resolve(now);
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(undefined);
      const done = (r: Registration | undefined) => {
        stop();
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const onAbort = () => done(undefined);
      const stop = this.watch(name, done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Whether `b` calls a different handler than `a` (another endpoint, or another sharing). */
export function differs(a: Registration, b: Registration): boolean {
  return a.endpoint !== b.endpoint || a.endpointType !== b.endpointType || a.shared !== b.shared;
}
