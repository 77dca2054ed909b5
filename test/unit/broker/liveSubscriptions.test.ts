import MQEmitter from 'mqemitter';
import { describe, expect, it } from 'vitest';
import { type Emitter, LiveSubscriptions } from '../../../src/broker/liveSubscriptions.js';

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** A real mqemitter, watched, and whether a message on `topic` reaches anyone there. */
function watched() {
  const mq = MQEmitter() as unknown as Emitter & { emit(m: object, cb: () => void): void };
  const live = new LiveSubscriptions(mq);
  return { mq, live };
}

describe('LiveSubscriptions', () => {
  it('counts from before a subscription is added until its removal is done', async () => {
    const { mq, live } = watched();
    const f = () => {};
    expect(live.any).toBe(false);
    mq.on('devices/#', f);
    expect(live.any).toBe(true);
    let removed = false;
    mq.removeListener('devices/#', f, () => {
      removed = true;
    });
    // mqemitter removes on a later turn: until then the subscription still receives, and still counts.
    expect(live.any).toBe(true);
    await turn();
    expect(removed).toBe(true);
    expect(live.any).toBe(false);
  });

  it('never counts below what the emitter holds: duplicates, other topics, removals of what was never added', async () => {
    const { mq, live } = watched();
    const f = () => {};
    const g = () => {};
    mq.on('a/#', f);
    mq.on('a/#', f); // mqemitter keeps both, and removes one per removeListener
    mq.on('b/+', g);
    mq.removeListener('a/#', g); // never added under a/#
    mq.removeListener('c', f); // never added at all
    await turn();
    mq.removeListener('a/#', f);
    await turn();
    expect(live.any).toBe(true); // a/# once more, and b/+
    mq.removeListener('a/#', f);
    await turn();
    expect(live.any).toBe(true); // b/+
    mq.removeListener('b/+', g);
    await turn();
    expect(live.any).toBe(false);
    mq.removeListener('b/+', g); // again: nothing left to take away
    await turn();
    mq.on('d', f);
    expect(live.any).toBe(true);
  });

  it('removeAllListeners of a topic takes every subscription of that topic, once done', async () => {
    const { mq, live } = watched();
    const f = () => {};
    mq.on('x/#', f);
    mq.on('x/#', () => {});
    mq.on('y', f);
    let done = false;
    mq.removeAllListeners('x/#', () => {
      done = true;
    });
    await turn();
    expect(done).toBe(true);
    expect(live.any).toBe(true);
    mq.removeAllListeners('y');
    await turn();
    expect(live.any).toBe(false);
  });

  it('passes the calls through: what is subscribed receives, and the callbacks are called', async () => {
    const { mq } = watched();
    const got: string[] = [];
    await new Promise<void>((resolve) =>
      mq.on(
        't/+',
        (m: { topic: string }, cb: () => void) => {
          got.push(m.topic);
          cb();
        },
        resolve,
      ),
    );
    await new Promise<void>((resolve) => mq.emit({ topic: 't/1' }, resolve));
    expect(got).toEqual(['t/1']);
  });
});
