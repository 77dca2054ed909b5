import { createHash } from 'node:crypto';

/**
 * Hex digits of the hash in a Device name: 64 bits. The chance that two of a million ids in one config
 * collide is about 3·10⁻⁸ (n²/2·2⁶⁴); the manager still detects a collision and resolves it (`attempt`).
 * DESIGN.md's first scheme took 6 digits, 24 bits, which collides at a few thousand devices.
 */
export const NAME_HASH_DIGITS = 16;
const LEGACY_HASH_DIGITS = 6;
/** A Device name is a label value and, after `leafbridge.io/`, a resource name: 63 characters at most. */
const MAX_NAME_LENGTH = 63;
/** Config names up to this long prefix their Devices whole; longer ones (up to 52) are cut, see deviceName. */
const MAX_PREFIX = MAX_NAME_LENGTH - 1 - NAME_HASH_DIGITS;

function hashOf(id: string, node: string | undefined, digits: number, attempt = 0): string {
  const key = node === undefined ? id : `${id}\0${node}`;
  return createHash('sha256')
    .update(attempt === 0 ? key : `${key}\0${attempt}`)
    .digest('hex')
    .slice(0, digits);
}

/**
 * `<config>-<16 hex of a hash of id (+node when the device is local to a node)>`, 63 characters at most: a
 * config name longer than 46 is cut to 46 and then hashed with the id, so that configs sharing those 46
 * characters do not share names. `attempt` > 0 gives the alternatives the manager takes when the name is
 * held by a Device with another id (a hash collision).
 */
export function deviceName(configName: string, id: string, node: string | undefined, attempt = 0): string {
  if (configName.length <= MAX_PREFIX) return `${configName}-${hashOf(id, node, NAME_HASH_DIGITS, attempt)}`;
  const hash = hashOf(`${configName}\0${id}`, node, NAME_HASH_DIGITS, attempt);
  return `${configName.slice(0, MAX_PREFIX)}-${hash}`;
}

/** The name Devices created before the 16-digit scheme carry (`<config>-<6 hex>`); they keep it. */
export function legacyDeviceName(configName: string, id: string, node: string | undefined): string {
  return `${configName}-${hashOf(id, node, LEGACY_HASH_DIGITS)}`;
}

/** Whether `name` is one the manager could have given device `id` (seen from `node`) of this config. */
export function isNameOf(name: string, configName: string, id: string, node: string | undefined): boolean {
  return name === deviceName(configName, id, node) || name === legacyDeviceName(configName, id, node);
}

const HASH_CHARS = 8;

/** 8 hex of a sha256 of `s`: what `shorten` appends. */
export const shortHash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, HASH_CHARS);

/**
 * A name cut to at most `max` characters (by default a DNS label's 63): unchanged when it fits, else its start, `-`, and 8 hex of a hash of
 * the whole name (so two long names with the same start stay apart).
 */
export function shorten(name: string, max = MAX_NAME_LENGTH): string {
  if (name.length <= max) return name;
  return `${name.slice(0, max - HASH_CHARS - 1)}-${shortHash(name)}`;
}
