import type { DiscoveredDevice } from '../../src/model/handler.js';
import type { PropertyFilter } from './filter.js';

/** What the broker last told about one device id: its birth properties and its presence. */
interface Entry {
  properties?: Record<string, string>;
  status?: 'online' | 'offline';
}

/** `full`: a new id was refused because maxDevices ids are tracked already. */
export type TrackResult = 'tracked' | 'full';

export interface TrackerOptions {
  maxDevices: number;
  propertyFilter: PropertyFilter;
  /** The device handed to pods for an id and its birth properties. */
  toDevice: (id: string, properties: Readonly<Record<string, string>>) => DiscoveredDevice;
}

/**
 * The announced devices as the retained birth and status messages describe them, at most `maxDevices` ids.
 * A device is listed while it has a birth and its status is not `offline`.
 */
export class DeviceTracker {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly options: TrackerOptions) {}

  get size(): number {
    return this.entries.size;
  }

  /** `undefined` properties: the birth was deleted. */
  setBirth(id: string, properties: Record<string, string> | undefined): TrackResult {
    return this.update(id, (entry) => {
      entry.properties = properties;
    });
  }

  /** `undefined` status: the retained status was cleared. */
  setStatus(id: string, status: 'online' | 'offline' | undefined): TrackResult {
    return this.update(id, (entry) => {
      entry.status = status;
    });
  }

  /** Forget everything (a new session: the retained messages will tell it all again). */
  clear(): void {
    this.entries.clear();
  }

  /** The listed devices, sorted by id. */
  list(): DiscoveredDevice[] {
    const devices: DiscoveredDevice[] = [];
    for (const [id, entry] of this.entries) {
      const { properties, status } = entry;
      if (properties === undefined || status === 'offline') continue;
      if (this.options.propertyFilter(properties)) devices.push(this.options.toDevice(id, properties));
    }
    return devices.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  private update(id: string, change: (entry: Entry) => void): TrackResult {
    const existing = this.entries.get(id);
    const entry: Entry = { ...existing };
    change(entry);
    if (entry.properties === undefined && entry.status === undefined) {
      this.entries.delete(id);
      return 'tracked';
    }
    if (!existing && this.entries.size >= this.options.maxDevices) return 'full';
    this.entries.set(id, entry);
    return 'tracked';
  }
}
