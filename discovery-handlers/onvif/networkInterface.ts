import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { LeafbridgeError } from '../../src/util/errors.js';
import { type Cidr, parseCidr } from './filters.js';

export interface BoundInterface {
  /** The IPv4 address probes are sent from and the multicast group is joined on. */
  address: string;
  /** The interface's subnet; announcements from outside it are dropped. */
  subnet: Cidr;
}

type InterfaceTable = ReturnType<typeof networkInterfaces>;

/** Resolves `eth1` or `192.168.1.10` to the interface's IPv4 address and subnet, or throws. */
export function resolveInterface(
  nameOrAddress: string,
  table: InterfaceTable = networkInterfaces(),
): BoundInterface {
  const entries = Object.values(table).flatMap((list) => list ?? []);
  const byAddress = isIPv4(nameOrAddress) ? entries.find((e) => e.address === nameOrAddress) : undefined;
  const byName = (table[nameOrAddress] ?? []).find((e) => e.family === 'IPv4');
  const entry = byAddress ?? byName;
  if (!entry) {
    throw new LeafbridgeError(
      'ONVIF_INTERFACE',
      `interface ${JSON.stringify(nameOrAddress)}: no such interface name or local IPv4 address`,
    );
  }
  const subnet = parseCidr(entry.cidr ?? `${entry.address}/32`);
  if (!subnet)
    throw new LeafbridgeError('ONVIF_INTERFACE', `interface ${nameOrAddress}: bad address ${entry.cidr}`);
  return { address: entry.address, subnet };
}
