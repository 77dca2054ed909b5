// Whether aedes holds any live subscription, so that the core can leave a telemetry PUBLISH that nobody could
// receive out of aedes' routing (a Packet, a Promise chain through the persistence and an mqemitter match per
// message, ~4% of the agent's CPU with 3,000 sensors and no subscriber: docs/performance.md, seventh round).

type Notify = unknown;
type Done = () => void;

/** What of mqemitter the watch wraps (aedes' `mq`). */
export interface Emitter {
  on(topic: string, notify: Notify, done?: Done): unknown;
  removeListener(topic: string, notify: Notify, done?: Done): unknown;
  removeAllListeners(topic: string, done?: Done): unknown;
}

/**
 * Counts the subscriptions added to an emitter from the moment it is watched. The count is never below what the
 * emitter holds, so a PUBLISH is never kept from a subscriber: a subscription counts from before it is added
 * until after its removal is done, and removing what was never added changes nothing. (aedes' own `$SYS`
 * subscriptions, made when it is built, are not counted: a device topic cannot match them, and PUBLISHes to `$`
 * topics always go through aedes.)
 */
export class LiveSubscriptions {
  private readonly byTopic = new Map<string, Map<Notify, number>>();
  private count = 0;

  constructor(mq: Emitter) {
    const on = mq.on.bind(mq);
    const removeListener = mq.removeListener.bind(mq);
    const removeAllListeners = mq.removeAllListeners.bind(mq);
    mq.on = (topic, notify, done) => {
      this.add(topic, notify);
      return on(topic, notify, done);
    };
    mq.removeListener = (topic, notify, done) =>
      removeListener(topic, notify, () => {
        this.remove(topic, notify);
        done?.();
      });
    mq.removeAllListeners = (topic, done) =>
      removeAllListeners(topic, () => {
        this.removeTopic(topic);
        done?.();
      });
  }

  /** Whether any subscription may be live. */
  get any(): boolean {
    return this.count > 0;
  }

  private add(topic: string, notify: Notify): void {
    let listeners = this.byTopic.get(topic);
    if (!listeners) {
      listeners = new Map();
      this.byTopic.set(topic, listeners);
    }
    listeners.set(notify, (listeners.get(notify) ?? 0) + 1);
    this.count++;
  }

  private remove(topic: string, notify: Notify): void {
    const listeners = this.byTopic.get(topic);
    const n = listeners?.get(notify);
    if (!listeners || n === undefined) return;
    this.count--;
    if (n > 1) listeners.set(notify, n - 1);
    else {
      listeners.delete(notify);
      if (listeners.size === 0) this.byTopic.delete(topic);
    }
  }

  private removeTopic(topic: string): void {
    const listeners = this.byTopic.get(topic);
    if (!listeners) return;
    for (const n of listeners.values()) this.count -= n;
    this.byTopic.delete(topic);
  }
}
