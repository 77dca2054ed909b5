import { createHash } from 'node:crypto';

/** `<config>-<6 hex of a hash of id (+node when the device is local to a node)>` (DESIGN.md). */
export function deviceName(configName: string, id: string, node: string | undefined): string {
  const hash = createHash('sha256')
    .update(node === undefined ? id : `${id}\0${node}`)
    .digest('hex')
    .slice(0, 6);
  return `${configName}-${hash}`;
}
