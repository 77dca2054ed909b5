import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { CameraTarget } from './properties.js';

/** One camera the handler knows of. */
export interface TrackedCamera {
  target: CameraTarget;
  metadataVersion: number;
  lastSeen: number;
  /** Bumped whenever the camera must be read again; a query result for an older generation is dropped. */
  generation: number;
  /** The device as last read (undefined until the first query ends). */
  device?: DiscoveredDevice;
  /** False when a MAC, manufacturer or model filter rejected it. */
  visible: boolean;
  /** Why the last query failed (its reason code); undefined when it succeeded or none has ended yet. */
  failure?: string;
  /** When the last query ended (clock ms); failed cameras are retried on announcement, not more often. */
  queriedAt: number;
  query?: AbortController;
}

export type UpsertResult = 'new' | 'changed' | 'same' | 'full';

/** The bounded table of tracked cameras, keyed by normalized uuid. */
export class CameraTable {
  private readonly cameras = new Map<string, TrackedCamera>();
  constructor(private readonly maxDevices: number) {}

  get size(): number {
    return this.cameras.size;
  }

  get(id: string): TrackedCamera | undefined {
    return this.cameras.get(id);
  }

  all(): TrackedCamera[] {
    return [...this.cameras.values()];
  }

  /** Records an announcement; a camera whose address or metadata version moved must be read again. */
  upsert(target: CameraTarget, metadataVersion: number, now: number): UpsertResult {
    const known = this.cameras.get(target.id);
    if (!known) {
      if (this.cameras.size >= this.maxDevices) return 'full';
      this.cameras.set(target.id, {
        target,
        metadataVersion,
        lastSeen: now,
        generation: 0,
        queriedAt: 0,
        visible: true,
      });
      return 'new';
    }
    known.lastSeen = now;
    const moved = known.target.deviceServiceUrl !== target.deviceServiceUrl;
    if (!moved && known.metadataVersion === metadataVersion) return 'same';
    known.target = target;
    known.metadataVersion = metadataVersion;
    return 'changed';
  }

  remove(id: string): TrackedCamera | undefined {
    const known = this.cameras.get(id);
    if (!known) return undefined;
    known.query?.abort();
    this.cameras.delete(id);
    return known;
  }

  /** Cameras not heard from since `before`. */
  unseenSince(before: number): TrackedCamera[] {
    return this.all().filter((c) => c.lastSeen < before);
  }

  /** The devices to hand out: read, and not filtered away; sorted by id. */
  devices(): DiscoveredDevice[] {
    return this.all()
      .filter((c): c is TrackedCamera & { device: DiscoveredDevice } => c.visible && c.device !== undefined)
      .map((c) => c.device)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}
