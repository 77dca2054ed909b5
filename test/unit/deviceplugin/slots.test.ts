import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_ID, MemorySlotClaims, sameHolder, slotIds } from '../../../src/deviceplugin/slots.js';
import { shorten, shortHash } from '../../../src/model/naming.js';

const sha8 = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 8);

describe('slot IDs', () => {
  it('shorten keeps a name that fits and cuts a longer one to its start, "-" and 8 hex of the whole', () => {
    expect(shortHash('abc')).toBe(sha8('abc'));
    const fits = 'a'.repeat(MAX_ID);
    expect(shorten(fits)).toBe(fits);
    const long = `${'a'.repeat(MAX_ID)}b`;
    expect(shorten(long)).toBe(`${'a'.repeat(MAX_ID - 9)}-${sha8(long)}`);
    expect(shorten(long)).toHaveLength(MAX_ID);
    expect(shorten('abcdefghijkl', 11)).toBe(`ab-${sha8('abcdefghijkl')}`);
    // Two long names with the same start stay apart.
    expect(shorten(`${long}x`)).not.toBe(shorten(`${long}y`));
  });

  it('slotIds numbers the slots from 0 and keeps every ID within 63 characters on one base', () => {
    expect(slotIds('cam-1', 3)).toEqual(['cam-1-0', 'cam-1-1', 'cam-1-2']);
    expect(slotIds('cam-1', 0)).toEqual([]);
    expect(slotIds('cam-1', -2)).toEqual([]);
    const edge = 'c'.repeat(58);
    expect(slotIds(edge, 1)).toEqual([`${edge}-0`]);
    const long = 'c'.repeat(59);
    const ids = slotIds(long, 12);
    const base = `${'c'.repeat(49)}-${sha8(long)}`;
    expect(ids).toEqual(Array.from({ length: 12 }, (_, i) => `${base}-${i}`));
    for (const id of ids) expect(id.length).toBeLessThanOrEqual(MAX_ID);
  });

  it('sameHolder needs the same node and the same resource', () => {
    const a = { node: 'n1', resource: 'leafbridge.io/cam' };
    expect(sameHolder(a, { ...a })).toBe(true);
    expect(sameHolder(a, { ...a, node: 'n2' })).toBe(false);
    expect(sameHolder(a, { ...a, resource: 'leafbridge.io/other' })).toBe(false);
  });
});

describe('MemorySlotClaims', () => {
  const A = { node: 'n1', resource: 'leafbridge.io/cam' };
  const B = { node: 'n2', resource: 'leafbridge.io/cam' };
  const ref = (slot: string, device = 'cam') => ({ slot, device });

  function claims(start = 1000) {
    let now = start;
    const table = new MemorySlotClaims({ now: () => now });
    let changes = 0;
    table.watch(() => changes++);
    return { table, changes: () => changes, tick: (ms: number) => (now += ms) };
  }

  it('records a claim with its device, holder and time; the same holder claims again and renews it', async () => {
    const { table, changes, tick } = claims();
    expect(await table.claim([ref('cam-0'), ref('cam-1')], A)).toEqual({ conflicts: [] });
    expect(table.holder('cam-0')).toEqual({ slot: 'cam-0', device: 'cam', ...A, since: 1000 });
    expect(table.holder('cam-1')).toEqual({ slot: 'cam-1', device: 'cam', ...A, since: 1000 });
    expect(table.holder('cam-2')).toBeUndefined();
    expect(changes()).toBe(1);
    tick(500);
    expect(await table.claim([ref('cam-0')], A)).toEqual({ conflicts: [] });
    expect(table.holder('cam-0')?.since).toBe(1500);
    expect(changes()).toBe(2);
  });

  it('is all or nothing: a slot held by another node, or another resource of this node, is a conflict', async () => {
    const { table, changes } = claims();
    await table.claim([ref('cam-0')], A);
    const { conflicts } = await table.claim([ref('cam-1'), ref('cam-0'), ref('cam-0')], B);
    expect(conflicts).toEqual([{ slot: 'cam-0', device: 'cam', ...A, since: 1000 }]);
    expect(table.holder('cam-1')).toBeUndefined();
    expect(changes()).toBe(1);
    const other = await table.claim([ref('cam-0')], { node: 'n1', resource: 'leafbridge.io/cams' });
    expect(other.conflicts.map((c) => c.slot)).toEqual(['cam-0']);
    expect(table.holder('cam-0')?.resource).toBe(A.resource);
  });

  it('releases only the slots the node holds, each once, and tells the watchers only of a change', async () => {
    const { table, changes } = claims();
    await table.claim([ref('cam-0'), ref('cam-1')], A);
    await table.claim([ref('cam-2')], B);
    expect(table.held('n1').map((c) => c.slot)).toEqual(['cam-0', 'cam-1']);
    expect(table.held('n2').map((c) => c.slot)).toEqual(['cam-2']);
    expect(await table.release(['cam-2', 'cam-3'], 'n1')).toEqual([]);
    expect(changes()).toBe(2);
    expect(await table.release(['cam-0', 'cam-0', 'cam-2'], 'n1')).toEqual(['cam-0']);
    expect(changes()).toBe(3);
    expect(table.holder('cam-0')).toBeUndefined();
    expect(table.holder('cam-2')?.node).toBe('n2');
    expect(table.held('n1').map((c) => c.slot)).toEqual(['cam-1']);
  });

  it('a throwing watcher neither undoes the claim nor stops the others; unwatching stops the calls', async () => {
    const table = new MemorySlotClaims();
    const heard: string[] = [];
    table.watch(() => {
      throw new Error('listener failed');
    });
    const stop = table.watch(() => heard.push('second'));
    const before = Date.now();
    expect(await table.claim([ref('cam-0')], A)).toEqual({ conflicts: [] });
    expect(table.holder('cam-0')?.since).toBeGreaterThanOrEqual(before);
    expect(heard).toEqual(['second']);
    stop();
    await table.release(['cam-0'], 'n1');
    expect(heard).toEqual(['second']);
  });
});
