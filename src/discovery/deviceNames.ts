import { deviceName, legacyDeviceName } from '../model/naming.js';
import type { Logger } from '../util/logger.js';

/** Alternatives tried after a collision before giving up (each one a further 64-bit hash). */
const MAX_ATTEMPTS = 16;

/**
 * Which name a found device of one config gets, on one node. Names are a hash of the id (and of the node for
 * local devices), so every node names a device alike; this class adds what a hash alone cannot:
 * - a Device that exists under the older 6-digit name keeps it (no delete and re-create under its pods);
 * - a name held by a Device with another id (a hash collision) is never taken over: the device gets the
 *   next alternative (`deviceName(…, attempt)`), and the collision is logged once.
 */
export class DeviceNames {
  /** Device name → id, for every Device of this config known here (stored, or written by this node). */
  private readonly holders = new Map<string, string>();
  /** id → the name it was given, so each id is resolved (and a collision logged) once. */
  private readonly given = new Map<string, string>();

  constructor(
    private readonly configName: string,
    private readonly node: string,
  ) {}

  note(name: string, id: string): void {
    this.holders.set(name, id);
  }

  forget(name: string): void {
    const id = this.holders.get(name);
    this.holders.delete(name);
    if (id !== undefined && this.given.get(id) === name) this.given.delete(id);
  }

  /**
   * The device's name; undefined (logged) only if every alternative is held by another id. A Device stored
   * under one of `formerIds` (and not yet taken by another device) is adopted: its name is the device's.
   */
  nameFor(
    id: string,
    shared: boolean,
    logger: Logger,
    formerIds: readonly string[] = [],
  ): string | undefined {
    const known = this.given.get(id);
    if (known !== undefined && this.holders.get(known) === id) return known;
    const node = shared ? undefined : this.node;
    const name = this.adopt(formerIds, node) ?? this.resolve(id, node, logger);
    if (name === undefined) return undefined;
    this.given.set(id, name);
    this.holders.set(name, id);
    return name;
  }

  private adopt(formerIds: readonly string[], node: string | undefined): string | undefined {
    for (const former of formerIds) {
      const names = [
        legacyDeviceName(this.configName, former, node),
        deviceName(this.configName, former, node),
      ];
      const held = names.find((name) => this.holders.get(name) === former);
      if (held !== undefined) return held;
    }
    return undefined;
  }

  private resolve(id: string, node: string | undefined, logger: Logger): string | undefined {
    const legacy = legacyDeviceName(this.configName, id, node);
    if (this.holders.get(legacy) === id) return legacy;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const name = deviceName(this.configName, id, node, attempt);
      const holder = this.holders.get(name);
      if (holder === undefined || holder === id) return name;
      logger.error(
        { config: this.configName, id, name, heldBy: holder, attempt },
        'Device name collision: the name is held by another device; taking the next alternative',
      );
    }
    logger.error(
      { config: this.configName, id },
      `no free Device name after ${MAX_ATTEMPTS} attempts; device left out`,
    );
    return undefined;
  }
}
