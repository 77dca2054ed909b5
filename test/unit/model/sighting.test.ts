import { describe, expect, it } from 'vitest';
import { withSighting } from '../../../src/model/sighting.js';
import { device } from '../../contract/deviceStore.contract.js';

const GRACE = 20_000;
const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const seen = (online = true) => {
  const d = device('cams-abc123');
  d.status.online = online;
  return d;
};

describe('withSighting: one node’s part folded into the shared Device', () => {
  it('nodes are merged, sorted and unique; lastSeen moves only when a node starts seeing it', () => {
    const a = withSighting(undefined, { node: 'n2', seen: seen(), now: at(0), graceMs: GRACE });
    expect(a?.spec.nodes).toEqual(['n2']);
    expect(a?.status.lastSeen).toBe(at(0));
    const b = withSighting(a!, { node: 'n1', seen: seen(), now: at(5), graceMs: GRACE });
    expect(b?.spec.nodes).toEqual(['n1', 'n2']);
    expect(b?.status.lastSeen).toBe(at(5));
    const again = withSighting(b!, { node: 'n1', seen: seen(), now: at(9), graceMs: GRACE });
    expect(again).toEqual(b); // nothing new: the same object, so no write
  });

  it('a local (not shared) device lists only the node that sees it', () => {
    const d = seen();
    d.spec.shared = false;
    const cur = withSighting(undefined, { node: 'n1', seen: d, now: at(0), graceMs: GRACE });
    expect(withSighting(cur!, { node: 'n1', seen: d, now: at(1), graceMs: GRACE })?.spec.nodes).toEqual([
      'n1',
    ]);
  });

  it('the last node to lose it turns it offline; it is deleted once the grace period has passed', () => {
    const both = withSighting(
      withSighting(undefined, { node: 'n1', seen: seen(), now: at(0), graceMs: GRACE })!,
      { node: 'n2', seen: seen(), now: at(0), graceMs: GRACE },
    )!;
    const one = withSighting(both, { node: 'n1', lostAt: at(10), now: at(10), graceMs: GRACE })!;
    expect(one.spec.nodes).toEqual(['n2']);
    expect(one.status.online).toBe(true);
    const none = withSighting(one, { node: 'n2', lostAt: at(12), now: at(12), graceMs: GRACE })!;
    expect(none.status.online).toBe(false);
    expect(none.status.lastSeen).toBe(at(12));
    expect(none.status.conditions.find((c) => c.type === 'Online')).toMatchObject({
      status: 'False',
      reason: 'Vanished',
    });
    // Not yet: the grace period counts from the last loss.
    expect(withSighting(none, { node: 'n1', lostAt: at(10), now: at(31), graceMs: GRACE })).toEqual(none);
    expect(withSighting(none, { node: 'n1', lostAt: at(10), now: at(32), graceMs: GRACE })).toBeNull();
  });

  it('writes delayed by an outage land in any order and still count the grace period from the latest loss', () => {
    const both = withSighting(
      withSighting(undefined, { node: 'n1', seen: seen(), now: at(0), graceMs: GRACE })!,
      { node: 'n2', seen: seen(), now: at(0), graceMs: GRACE },
    )!;
    // n2 lost it at 50 s, n1 at 2 s; the server comes back at 60 s and n2's write lands first.
    const n2First = withSighting(both, { node: 'n2', lostAt: at(50), now: at(60), graceMs: GRACE })!;
    const last = withSighting(n2First, { node: 'n1', lostAt: at(2), now: at(60), graceMs: GRACE });
    expect(last?.status.lastSeen).toBe(at(50));
    expect(last?.status.online).toBe(false);
    // Lost by both long before the server came back: deleted by the write that empties it.
    const long = withSighting(both, { node: 'n2', lostAt: at(2), now: at(60), graceMs: GRACE })!;
    expect(withSighting(long, { node: 'n1', lostAt: at(3), now: at(60), graceMs: GRACE })).toBeNull();
  });

  it('a node that does not see an object it is not listed on changes nothing; no object, nothing to do', () => {
    const only2 = withSighting(undefined, { node: 'n2', seen: seen(), now: at(0), graceMs: GRACE })!;
    expect(withSighting(only2, { node: 'n1', lostAt: at(5), now: at(5), graceMs: GRACE })).toBe(only2);
    expect(withSighting(undefined, { node: 'n1', lostAt: at(5), now: at(5), graceMs: GRACE })).toBeNull();
  });
});
