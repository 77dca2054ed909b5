import { describe, expect, it } from 'vitest';
import { WatchLines } from '../../../src/kubeclient/watchLines.js';

function collect() {
  const events: [string, unknown][] = [];
  return { events, lines: new WatchLines((type, object) => events.push([type, object])) };
}

describe('WatchLines: the events of a watch stream', () => {
  it('splits events across chunks at newlines, whatever the chunk boundaries', () => {
    const { events, lines } = collect();
    const text = `${JSON.stringify({ type: 'ADDED', object: { n: 1 } })}\n${JSON.stringify({ type: 'BOOKMARK', object: { n: 2 } })}\n`;
    for (const ch of text) lines.push(ch);
    expect(events).toEqual([
      ['ADDED', { n: 1 }],
      ['BOOKMARK', { n: 2 }],
    ]);
  });

  it('a last line without a newline counts when the stream ends', () => {
    const { events, lines } = collect();
    lines.push('{"type":"DELETED","object":{"n":3}}');
    expect(events).toEqual([]);
    lines.end();
    expect(events).toEqual([['DELETED', { n: 3 }]]);
  });

  it('skips blank lines, garbage and objects that are not events, and goes on', () => {
    const { events, lines } = collect();
    lines.push('\n  \nnot json\n{"object":{}}\n[1]\nnull\n{"type":"ERROR","object":{"code":410}}\n');
    expect(events).toEqual([['ERROR', { code: 410 }]]);
  });
});
