import { readFile, readlink, realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** What the system says about a serial port's hardware; every field is optional (ptys have none). */
export interface SerialIdentity {
  /** The bus of the port's parent device: usb-serial, usb, pnp, platform, serial8250... */
  subsystem?: string;
  vendorId?: string;
  productId?: string;
  serialNumber?: string;
  manufacturer?: string;
  product?: string;
  /** The USB interface number (bInterfaceNumber, two hex digits) on multi-port adapters. */
  interfaceNumber?: string;
}

/** Where sysfs and the udev database live; tests point these at fake trees. */
export interface SysRoots {
  sysfsRoot: string;
  udevDataDir: string;
}

export const systemRoots: SysRoots = { sysfsRoot: '/sys', udevDataDir: '/run/udev/data' } as const;

/** Linux dev_t → major and minor numbers (glibc's gnu_dev_major / gnu_dev_minor). */
export function splitDevT(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** Identity of the character device `major:minor` (named `name` in /dev): sysfs first, udev fills gaps. */
export async function readSerialIdentity(
  major: number,
  minor: number,
  name: string,
  roots: SysRoots = systemRoots,
): Promise<SerialIdentity> {
  const fromSysfs = await readSysfsIdentity(major, minor, name, roots.sysfsRoot);
  const fromUdev = await readUdevIdentity(major, minor, roots.udevDataDir);
  return mergeIdentity(fromSysfs, fromUdev);
}

async function readSysfsIdentity(
  major: number,
  minor: number,
  name: string,
  sysfsRoot: string,
): Promise<SerialIdentity> {
  const classDir =
    (await tryRealpath(join(sysfsRoot, 'dev', 'char', `${major}:${minor}`))) ??
    (await tryRealpath(join(sysfsRoot, 'class', 'tty', name)));
  if (!classDir) return {};
  const deviceDir = await tryRealpath(join(classDir, 'device'));
  if (!deviceDir) return {};
  const identity: SerialIdentity = {};
  const subsystem = await tryReadlink(join(deviceDir, 'subsystem'));
  if (subsystem) identity.subsystem = basename(subsystem);
  const usb = await findUsbDeviceDir(deviceDir, (await tryRealpath(sysfsRoot)) ?? sysfsRoot);
  return usb ? { ...identity, ...(await readUsbAttributes(usb)) } : identity;
}

interface UsbDirs {
  device: string;
  /** The interface directory below it (e.g. `1-1:1.0`), when the walk came through one. */
  iface?: string;
}

/** Walks up from a tty's parent device to the USB device that holds idVendor (at most a few levels). */
async function findUsbDeviceDir(start: string, stopAt: string): Promise<UsbDirs | undefined> {
  let dir = start;
  let below: string | undefined;
  for (let depth = 0; depth < 8; depth++) {
    if (dir === stopAt || dir === dirname(dir) || !dir.startsWith(stopAt)) return undefined;
    if ((await tryReadText(join(dir, 'idVendor'))) !== undefined) return { device: dir, iface: below };
    below = dir;
    dir = dirname(dir);
  }
  return undefined;
}

async function readUsbAttributes(usb: UsbDirs): Promise<SerialIdentity> {
  const read = (file: string) => tryReadText(join(usb.device, file));
  return compact({
    vendorId: await read('idVendor'),
    productId: await read('idProduct'),
    serialNumber: await read('serial'),
    manufacturer: await read('manufacturer'),
    product: await read('product'),
    interfaceNumber: usb.iface ? await tryReadText(join(usb.iface, 'bInterfaceNumber')) : undefined,
  });
}

/** Reads /run/udev/data/c<major>:<minor>; absent on machines without udev. */
export async function readUdevIdentity(
  major: number,
  minor: number,
  dataDir: string,
): Promise<SerialIdentity> {
  const text = await tryReadText(join(dataDir, `c${major}:${minor}`));
  return text === undefined ? {} : parseUdevData(text);
}

/** The `E:KEY=value` lines of a udev database entry, as an identity. */
export function parseUdevData(text: string): SerialIdentity {
  const env = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('E:')) continue;
    const eq = line.indexOf('=');
    if (eq > 2) env.set(line.slice(2, eq), line.slice(eq + 1).trim());
  }
  const pick = (...keys: string[]) => keys.map((k) => env.get(k)).find((v) => v !== undefined && v !== '');
  return compact({
    vendorId: pick('ID_USB_VENDOR_ID', 'ID_VENDOR_ID'),
    productId: pick('ID_USB_MODEL_ID', 'ID_MODEL_ID'),
    serialNumber: pick('ID_USB_SERIAL_SHORT', 'ID_SERIAL_SHORT'),
    manufacturer: decodeUdev(pick('ID_USB_VENDOR_ENC', 'ID_VENDOR_ENC', 'ID_USB_VENDOR', 'ID_VENDOR')),
    product: decodeUdev(pick('ID_USB_MODEL_ENC', 'ID_MODEL_ENC', 'ID_USB_MODEL', 'ID_MODEL')),
    interfaceNumber: pick('ID_USB_INTERFACE_NUM'),
  });
}

/** udev's *_ENC values escape bytes as \xHH (spaces as \x20). */
function decodeUdev(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const bytes = Buffer.from(
    value.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
    'latin1',
  );
  return bytes.toString('utf8').trim();
}

function mergeIdentity(primary: SerialIdentity, fallback: SerialIdentity): SerialIdentity {
  return { ...fallback, ...primary };
}

function compact(identity: Partial<Record<keyof SerialIdentity, string>>): SerialIdentity {
  const out: SerialIdentity = {};
  for (const [key, value] of Object.entries(identity) as [keyof SerialIdentity, string | undefined][]) {
    if (value !== undefined && value !== '') out[key] = value;
  }
  return out;
}

async function tryRealpath(path: string): Promise<string | undefined> {
  try {
    return await realpath(path);
  } catch {
    return undefined;
  }
}

async function tryReadlink(path: string): Promise<string | undefined> {
  try {
    return await readlink(path);
  } catch {
    return undefined;
  }
}

async function tryReadText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}
