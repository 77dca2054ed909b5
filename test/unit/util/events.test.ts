import { describe, expect, it } from 'vitest';
import { EventBus } from '../../../src/util/events.js';
import { silentLogger } from '../../../src/util/logger.js';

interface Events {
  message: { topic: string };
  device: string;
}

describe('EventBus', () => {
  it('calls the listeners of one event only, and counts them', () => {
    const bus = new EventBus<Events>(silentLogger());
    const seen: string[] = [];
    expect(bus.listenerCount('message')).toBe(0);
    bus.emit('message', { topic: 'nobody listens' });
    bus.on('message', 'a', (m) => seen.push(`a:${m.topic}`));
    bus.on('device', 'a', (d) => seen.push(`a:device ${d}`));
    bus.on('message', 'b', (m) => seen.push(`b:${m.topic}`));
    expect(bus.listenerCount('message')).toBe(2);
    expect(bus.listenerCount('device')).toBe(1);
    bus.emit('message', { topic: 't' });
    expect(seen).toEqual(['a:t', 'b:t']);
  });

  it("removes one owner's listeners and leaves the others", () => {
    const bus = new EventBus<Events>(silentLogger());
    const seen: string[] = [];
    bus.on('message', 'a', (m) => seen.push(`a:${m.topic}`));
    bus.on('device', 'a', (d) => seen.push(`a:${d}`));
    bus.on('message', 'b', (m) => seen.push(`b:${m.topic}`));
    bus.removeOwner('a');
    expect(bus.listenerCount('message')).toBe(1);
    expect(bus.listenerCount('device')).toBe(0);
    bus.emit('message', { topic: 't' });
    bus.emit('device', 'd');
    expect(seen).toEqual(['b:t']);
    bus.removeOwner('b');
    expect(bus.listenerCount('message')).toBe(0);
  });

  it('goes on to the next listener when one throws', () => {
    const bus = new EventBus<Events>(silentLogger());
    const seen: string[] = [];
    bus.on('device', 'bad', () => {
      throw new Error('listener broke');
    });
    bus.on('device', 'good', (d) => seen.push(d));
    expect(() => bus.emit('device', 'd1')).not.toThrow();
    expect(seen).toEqual(['d1']);
  });
});
