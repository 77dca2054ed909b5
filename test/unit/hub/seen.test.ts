// The hub's per-node record of message ids (src/hub/seen.ts): a resend of an id inside the window is a
// duplicate, a new id never is, an id below the window is let through, and two epochs per node are kept.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { MessageId } from '../../../src/hub/messages.js';
import { SEEN_NODES, SEEN_WINDOW, SeenIds } from '../../../src/hub/seen.js';

const id = (epoch: string, seq: number): MessageId => ({ epoch, seq, text: `${epoch}-${seq}` });
const E1 = 'e1e1e1e1e1e1';
const E2 = 'e2e2e2e2e2e2';
const E3 = 'e3e3e3e3e3e3';

/**
 * The bytes of ArrayBuffers still reachable: full collections (without starting the test process with
 * --expose-gc) until the figure holds still, since V8 frees the buffers of a collection after it, in the
 * background.
 */
async function arrayBuffersLeft(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let last = -1;
  for (let i = 0; i < 50; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
    const now = process.memoryUsage().arrayBuffers;
    if (now === last) return now;
    last = now;
  }
  throw new Error('ArrayBuffer memory did not settle after 50 collections');
}

describe('SeenIds', () => {
  it('answers false for a new id and true for the same id again, per node', () => {
    const seen = new SeenIds();
    expect(seen.check('n1', id(E1, 1))).toBe(false);
    expect(seen.check('n1', id(E1, 1))).toBe(true);
    expect(seen.check('n1', id(E1, 1))).toBe(true);
    // The same id from another node is another message.
    expect(seen.check('n2', id(E1, 1))).toBe(false);
    expect(seen.check('n2', id(E1, 1))).toBe(true);
  });

  it('remembers every id of a run, in any order, and none it was not given', () => {
    const seen = new SeenIds();
    const order = [5, 1, 9, 3, 7, 2, 10, 4, 8, 6];
    for (const seq of order) expect(seen.check('n', id(E1, seq))).toBe(false);
    for (const seq of order) expect(seen.check('n', id(E1, seq))).toBe(true);
    expect(seen.check('n', id(E1, 11))).toBe(false);
  });

  it('keeps the gap below a jump open: the skipped ids are new when they come', () => {
    const seen = new SeenIds();
    expect(seen.check('n', id(E1, 10))).toBe(false);
    expect(seen.check('n', id(E1, 20))).toBe(false);
    for (let s = 11; s < 20; s++) expect(seen.check('n', id(E1, s))).toBe(false);
    for (let s = 10; s <= 20; s++) expect(seen.check('n', id(E1, s))).toBe(true);
  });

  it('forgets the slots the window moves past: an id one window above an old one is new, not its namesake', () => {
    const seen = new SeenIds();
    // seq and seq + SEEN_WINDOW share a bit; moving high across seq + SEEN_WINDOW must clear the old mark.
    for (const s of [2, 3, 4]) expect(seen.check('n', id(E1, s))).toBe(false);
    expect(seen.check('n', id(E1, 3 + SEEN_WINDOW))).toBe(false); // skips 5 … 2 + SEEN_WINDOW
    expect(seen.check('n', id(E1, 2 + SEEN_WINDOW))).toBe(false);
    expect(seen.check('n', id(E1, 2 + SEEN_WINDOW))).toBe(true);
  });

  it('clears the whole window on a jump of a full window or more', () => {
    const seen = new SeenIds();
    for (let s = 1; s <= 20; s++) seen.check('n', id(E1, s));
    const far = 20 + SEEN_WINDOW;
    expect(seen.check('n', id(E1, far))).toBe(false);
    // far − 5 … far − 1 are inside the new window, never seen, and share their slots with 15 … 19.
    for (let s = far - 5; s < far; s++) expect(seen.check('n', id(E1, s))).toBe(false);
    // far − 19 shares its slot with 1: new, then known.
    expect(seen.check('n', id(E1, far - 19))).toBe(false);
    expect(seen.check('n', id(E1, far - 19))).toBe(true);
  });

  it('lets an id at or below the window through (too old to tell), and still knows the ids inside it', () => {
    const seen = new SeenIds();
    const high = 2 * SEEN_WINDOW;
    for (const s of [high - SEEN_WINDOW + 1, high - 1, high]) expect(seen.check('n', id(E1, s))).toBe(false);
    // Exactly SEEN_WINDOW below high: outside, let through each time and never recorded.
    expect(seen.check('n', id(E1, high - SEEN_WINDOW))).toBe(false);
    expect(seen.check('n', id(E1, high - SEEN_WINDOW))).toBe(false);
    // The oldest id inside the window is still a duplicate.
    expect(seen.check('n', id(E1, high - SEEN_WINDOW + 1))).toBe(true);
    expect(seen.check('n', id(E1, high - 1))).toBe(true);
  });

  it('keeps two epochs per node (an edge whose database was replaced) and forgets the oldest of three', () => {
    const seen = new SeenIds();
    expect(seen.check('n', id(E1, 1))).toBe(false);
    expect(seen.check('n', id(E2, 1))).toBe(false); // the same seq in a new epoch is a new message
    expect(seen.check('n', id(E1, 1))).toBe(true);
    expect(seen.check('n', id(E2, 1))).toBe(true);
    expect(seen.check('n', id(E3, 1))).toBe(false); // a third epoch: the oldest (E1) goes
    expect(seen.check('n', id(E2, 1))).toBe(true);
    expect(seen.check('n', id(E3, 1))).toBe(true);
    expect(seen.check('n', id(E1, 1))).toBe(false);
  });

  it(`remembers ${SEEN_NODES} nodes and forgets the one heard from first when one more comes`, () => {
    const seen = new SeenIds();
    for (let n = 0; n < SEEN_NODES; n++) seen.check(`node-${n}`, id(E1, 1));
    expect(seen.check('node-0', id(E1, 1))).toBe(true); // all there: the first is still known
    expect(seen.check(`node-${SEEN_NODES - 1}`, id(E1, 1))).toBe(true);
    expect(seen.check('one-more', id(E1, 1))).toBe(false);
    expect(seen.check('node-0', id(E1, 1))).toBe(false); // forgotten (and now known again, evicting node-1)
    expect(seen.check('node-2', id(E1, 1))).toBe(true);
    expect(seen.check('one-more', id(E1, 1))).toBe(true);
  });

  it('costs 1 KiB per node and epoch (the window’s bits), whatever the ids', async () => {
    const seen = new SeenIds();
    const nodes = 5000;
    const before = await arrayBuffersLeft(); // what earlier tests left goes now, not during the count
    for (let n = 0; n < nodes; n++) seen.check(`node-${n}`, id(E1, n * 7919));
    const perNode = ((await arrayBuffersLeft()) - before) / nodes;
    // Nothing else here keeps ArrayBuffers: what is left after the collection is the windows `seen` holds.
    expect(perNode).toBeGreaterThanOrEqual(SEEN_WINDOW / 8);
    expect(perNode).toBeLessThan(1.25 * (SEEN_WINDOW / 8));
  });
});
