import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DeviceNames } from '../../../src/discovery/deviceNames.js';
import { deviceName, isNameOf, legacyDeviceName } from '../../../src/model/naming.js';
import { createLogger } from '../../../src/util/logger.js';

function logged() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

describe('DeviceNames', () => {
  it('names a local device by id and node, a shared one by id alone, the same each time', () => {
    const { logger, lines } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    expect(names.nameFor('a', false, logger)).toBe(deviceName('cams', 'a', 'edge-1'));
    expect(names.nameFor('b', true, logger)).toBe(deviceName('cams', 'b', undefined));
    expect(deviceName('cams', 'b', undefined)).not.toBe(deviceName('cams', 'b', 'edge-1'));
    expect(names.nameFor('a', false, logger)).toBe(deviceName('cams', 'a', 'edge-1'));
    expect(lines).toEqual([]);
  });

  it('keeps the 6-digit name of a Device stored under it', () => {
    const { logger } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    const legacy = legacyDeviceName('cams', 'a', undefined);
    names.note(legacy, 'a');
    expect(names.nameFor('a', true, logger)).toBe(legacy);
    // A 6-digit name held by another id is not this device's.
    names.note(legacyDeviceName('cams', 'b', undefined), 'someone-else');
    expect(names.nameFor('b', true, logger)).toBe(deviceName('cams', 'b', undefined));
  });

  it('never takes a name held by another id: logs the collision once and takes the next alternative', () => {
    const { logger, lines } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    const first = deviceName('cams', 'a', undefined);
    names.note(first, 'other');
    const second = deviceName('cams', 'a', undefined, 1);
    expect(second).not.toBe(first);
    expect(names.nameFor('a', true, logger)).toBe(second);
    expect(names.nameFor('a', true, logger)).toBe(second);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'Device name collision: the name is held by another device; taking the next alternative'],
    ]);
    expect(lines[0]).toMatchObject({ config: 'cams', id: 'a', name: first, heldBy: 'other', attempt: 0 });
    // Another id now asking for the alternative's hash sees it held by 'a'.
    expect(names.nameFor('other', true, logger)).toBe(deviceName('cams', 'other', undefined));
  });

  it('forgetting another name of the same id keeps its name and logs no collision again', () => {
    const { logger, lines } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    names.note(deviceName('cams', 'a', undefined), 'other');
    const given = names.nameFor('a', true, logger);
    expect(lines).toHaveLength(1); // the collision, logged once
    // A second Device of the same id goes away (its old 6-digit name, say): 'a' keeps the name it was given.
    const legacy = legacyDeviceName('cams', 'a', undefined);
    names.note(legacy, 'a');
    names.forget(legacy);
    expect(names.nameFor('a', true, logger)).toBe(given);
    expect(lines).toHaveLength(1);
  });

  it('leaves a device out when all 16 alternatives are held, and says so', () => {
    const { logger, lines } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    for (let attempt = 0; attempt < 16; attempt++)
      names.note(deviceName('cams', 'a', 'edge-1', attempt), `x${attempt}`);
    expect(names.nameFor('a', false, logger)).toBeUndefined();
    expect(lines).toHaveLength(17);
    // The line names the config and the device left out: without them an operator cannot tell which one.
    expect(lines[16]).toMatchObject({
      level: 50,
      msg: 'no free Device name after 16 attempts; device left out',
      config: 'cams',
      id: 'a',
    });
    // One more alternative free (the 16th, attempt 15): it is taken.
    names.forget(deviceName('cams', 'a', 'edge-1', 15));
    expect(names.nameFor('a', false, logger)).toBe(deviceName('cams', 'a', 'edge-1', 15));
  });

  it('a forgotten name is free again; a name given to an id and then held by another is resolved again', () => {
    const { logger } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    const name = names.nameFor('a', true, logger) as string;
    names.forget(name);
    names.note(name, 'b');
    expect(names.nameFor('a', true, logger)).toBe(deviceName('cams', 'a', undefined, 1));
    // Forgetting a name given to no one changes nothing else.
    names.forget('unknown');
    expect(names.nameFor('a', true, logger)).toBe(deviceName('cams', 'a', undefined, 1));
    // 'b' took the name by note(); a later given name held by someone else is not returned from memory.
    const c = names.nameFor('c', true, logger) as string;
    names.note(c, 'd');
    expect(names.nameFor('c', true, logger)).toBe(deviceName('cams', 'c', undefined, 1));
  });

  it('adopts the Device stored under a former id, by either name form, unless another id holds it', () => {
    const { logger } = logged();
    const names = new DeviceNames('cams', 'edge-1');
    const old = deviceName('cams', 'old-id', 'edge-1');
    names.note(old, 'old-id');
    expect(names.nameFor('new-id', false, logger, ['gone', 'old-id'])).toBe(old);
    expect(names.nameFor('new-id', false, logger)).toBe(old);
    const legacy = legacyDeviceName('cams', 'old-2', undefined);
    names.note(legacy, 'old-2');
    expect(names.nameFor('new-2', true, logger, ['old-2'])).toBe(legacy);
    // Once adopted, the name is the new id's: a second claimant of that former id gets its own name.
    expect(names.nameFor('third', true, logger, ['old-2'])).toBe(deviceName('cams', 'third', undefined));
    // A former name held by an unrelated id is not adopted.
    names.note(deviceName('cams', 'old-3', undefined), 'stranger');
    expect(names.nameFor('new-3', true, logger, ['old-3'])).toBe(deviceName('cams', 'new-3', undefined));
  });

  it('isNameOf accepts both name forms of this id and node, and nothing else', () => {
    expect(isNameOf(deviceName('c', 'a', 'n'), 'c', 'a', 'n')).toBe(true);
    expect(isNameOf(legacyDeviceName('c', 'a', 'n'), 'c', 'a', 'n')).toBe(true);
    expect(isNameOf(deviceName('c', 'a', undefined), 'c', 'a', 'n')).toBe(false);
    expect(isNameOf(deviceName('c', 'a', 'n', 1), 'c', 'a', 'n')).toBe(false);
  });
});
