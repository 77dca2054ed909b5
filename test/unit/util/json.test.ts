import { describe, expect, it } from 'vitest';
import { stableJson } from '../../../src/util/json.js';
import { byCodeUnit } from '../../../src/util/order.js';

describe('stableJson', () => {
  it('orders keys by code unit at every depth, whatever the insertion order (the same text on every machine)', () => {
    // localeCompare would put `b` before `B` and, under LANG=da_DK, `aa` after `z`.
    const one = stableJson({ b: 1, B: 2, z: { y: 1, Y: 2 }, aa: 3, 'a-b': 4 });
    const other = stableJson({ 'a-b': 4, aa: 3, z: { Y: 2, y: 1 }, B: 2, b: 1 });
    expect(one).toBe('{"B":2,"a-b":4,"aa":3,"b":1,"z":{"Y":2,"y":1}}');
    expect(other).toBe(one);
  });

  it('keeps arrays in their order', () => {
    expect(stableJson({ list: ['z', 'a'] })).toBe('{"list":["z","a"]}');
  });
});

describe('byCodeUnit', () => {
  it('sorts as the code units compare, and calls only identical strings equal', () => {
    expect(['z', 'aa', 'B', 'b', 'a-b'].sort(byCodeUnit)).toEqual(['B', 'a-b', 'aa', 'b', 'z']);
    // Composed and decomposed é: equal to localeCompare, different here.
    expect(byCodeUnit('\u00e9', 'e\u0301')).not.toBe(0);
    expect(byCodeUnit('x', 'x')).toBe(0);
  });
});
