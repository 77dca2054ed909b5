/**
 * Orders strings by UTF-16 code unit: the same order on every machine. `localeCompare` follows the process's
 * locale (under LANG=da_DK `aa` sorts after `z`) and calls some distinct strings equal.
 */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
