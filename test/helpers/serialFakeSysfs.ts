import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';

/**
 * A fake sysfs + udev database shaped like a real machine's:
 * - 188:0 ttyUSB0: FTDI FT232R (usb-serial driver), interface 00, found through /sys/dev/char
 * - 166:0 ttyACM0: Arduino Uno (cdc_acm, parent in subsystem usb), interface 02
 * - 4:64 ttyS0: an on-board UART (platform), found only through /sys/class/tty
 * - 166:1: no sysfs entry, only a udev database record (CH340)
 * - 1:3 and 1:5 (/dev/null, /dev/zero) posing as the FTDI and Arduino ports, so the handler can be run
 *   against real character devices without USB hardware.
 */
export async function buildFakeSysfs(root: string): Promise<{ sysfsRoot: string; udevDataDir: string }> {
  const sys = join(root, 'sys');
  const udev = join(root, 'udev');
  for (const bus of ['usb-serial', 'usb', 'platform'])
    await mkdir(join(sys, 'bus', bus), { recursive: true });
  const usb1 = join(sys, 'devices/pci0000:00/0000:00:14.0/usb1');

  const ftdi = join(usb1, '1-1');
  await attrs(ftdi, {
    idVendor: '0403',
    idProduct: '6001',
    serial: 'A12345',
    manufacturer: 'FTDI',
    product: 'FT232R USB UART',
  });
  await attrs(join(ftdi, '1-1:1.0'), { bInterfaceNumber: '00' });
  const ttyUsb0 = join(ftdi, '1-1:1.0/ttyUSB0');
  await link(join(ttyUsb0, 'subsystem'), join(sys, 'bus/usb-serial'));
  await ttyClassDir(sys, join(ttyUsb0, 'tty/ttyUSB0'), ttyUsb0, '188:0', ['188:0', '1:3']);

  const uno = join(usb1, '1-2');
  await attrs(uno, {
    idVendor: '2341',
    idProduct: '0043',
    serial: '85736323838351F0C0A1',
    manufacturer: 'Arduino (www.arduino.cc)',
  });
  const unoIface = join(uno, '1-2:1.2');
  await attrs(unoIface, { bInterfaceNumber: '02' });
  await link(join(unoIface, 'subsystem'), join(sys, 'bus/usb'));
  await ttyClassDir(sys, join(unoIface, 'tty/ttyACM0'), unoIface, '166:0', ['166:0', '1:5']);

  const uart = join(sys, 'devices/platform/serial8250');
  await link(join(uart, 'subsystem'), join(sys, 'bus/platform'));
  const ttyS0 = join(uart, 'tty/ttyS0');
  await ttyClassDir(sys, ttyS0, uart, '4:64', []);
  await link(join(sys, 'class/tty/ttyS0'), ttyS0);

  await mkdir(udev, { recursive: true });
  await writeFile(
    join(udev, 'c166:1'),
    [
      'S:serial/by-id/usb-1a86_USB_Serial-if00-port0',
      'E:ID_VENDOR=1a86',
      'E:ID_VENDOR_ENC=QinHeng\\x20Electronics',
      'E:ID_VENDOR_ID=1a86',
      'E:ID_MODEL=USB_Serial',
      'E:ID_MODEL_ENC=USB\\x20Serial',
      'E:ID_MODEL_ID=7523',
      'E:ID_SERIAL_SHORT=CH340-9',
      'E:ID_USB_INTERFACE_NUM=00',
      '',
    ].join('\n'),
  );
  // udev may know more (or differ): sysfs wins where both speak.
  await writeFile(join(udev, 'c188:0'), 'E:ID_VENDOR_ID=ffff\nE:ID_MODEL_ENC=From\\x20udev\n');
  return { sysfsRoot: sys, udevDataDir: udev };
}

async function attrs(dir: string, values: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, value] of Object.entries(values)) await writeFile(join(dir, name), `${value}\n`);
}

async function link(path: string, target: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await symlink(relative(dirname(path), target), path);
}

/** A tty class directory (`dev`, `device` link) and its /sys/dev/char entries. */
async function ttyClassDir(sys: string, dir: string, device: string, dev: string, charLinks: string[]) {
  await attrs(dir, { dev });
  await link(join(dir, 'device'), device);
  for (const majorMinor of charLinks) await link(join(sys, 'dev/char', majorMinor), dir);
}
