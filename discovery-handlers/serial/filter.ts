import type { IdFilter, SerialDetails } from './schema.js';
import type { SerialIdentity } from './sysfs.js';

/** Lower case; USB ids also lose a 0x prefix and are padded to four hex digits (`0x403` → `0403`). */
export function normaliseHexId(value: string): string {
  const v = value.trim().toLowerCase().replace(/^0x/, '');
  return /^[0-9a-f]{1,4}$/.test(v) ? v.padStart(4, '0') : v;
}

function normaliseText(value: string): string {
  return value.trim().toLowerCase();
}

/**
 * One filter against one value. `include` keeps only listed values (an unknown value fails it);
 * `exclude` drops listed values (an unknown value passes it).
 */
export function passesFilter(
  filter: IdFilter | undefined,
  value: string | undefined,
  normalise: (v: string) => string = normaliseText,
): boolean {
  if (!filter) return true;
  const v = value === undefined ? undefined : normalise(value);
  if (filter.include && filter.include.length > 0) {
    if (v === undefined || !filter.include.some((item) => normalise(item) === v)) return false;
  }
  if (v !== undefined && filter.exclude?.some((item) => normalise(item) === v)) return false;
  return true;
}

type FilterDetails = Pick<SerialDetails, 'vendorIds' | 'productIds' | 'serialNumbers' | 'manufacturers'>;

/** The first filter a port fails (for the debug log), or undefined when it passes all of them. */
export function failedFilter(details: FilterDetails, identity: SerialIdentity): string | undefined {
  if (!passesFilter(details.vendorIds, identity.vendorId, normaliseHexId)) return 'vendorIds';
  if (!passesFilter(details.productIds, identity.productId, normaliseHexId)) return 'productIds';
  if (!passesFilter(details.serialNumbers, identity.serialNumber)) return 'serialNumbers';
  if (!passesFilter(details.manufacturers, identity.manufacturer)) return 'manufacturers';
  return undefined;
}
