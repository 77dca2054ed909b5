import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSerialHandler } from '../../discovery-handlers/serial/handler.js';
import {
  parseUdevData,
  readSerialIdentity,
  type SysRoots,
  splitDevT,
} from '../../discovery-handlers/serial/sysfs.js';
import { buildFakeSysfs } from '../helpers/serialFakeSysfs.js';
import { DiscoveryRun, serialTestLogger } from '../helpers/serialHarness.js';

let root: string;
let roots: SysRoots;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'lb-sysfs-'));
  roots = await buildFakeSysfs(root);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('splitDevT', () => {
  it('splits a real dev_t (/dev/null is 1:3)', async () => {
    expect(splitDevT((await stat('/dev/null', { bigint: true })).rdev)).toEqual({ major: 1, minor: 3 });
  });
  it('handles the high bits of large majors and minors (glibc makedev layout)', () => {
    const major = 0x1234n;
    const minor = 0x12345n;
    const rdev =
      ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
    expect(splitDevT(rdev)).toEqual({ major: 0x1234, minor: 0x12345 });
  });
});

describe('readSerialIdentity against a fake sysfs tree', () => {
  it('walks up from a usb-serial tty to the USB device and its interface', async () => {
    expect(await readSerialIdentity(188, 0, 'ttyUSB0', roots)).toEqual({
      subsystem: 'usb-serial',
      vendorId: '0403',
      productId: '6001',
      serialNumber: 'A12345',
      manufacturer: 'FTDI',
      product: 'FT232R USB UART',
      interfaceNumber: '00',
    });
  });

  it('reads a CDC-ACM port whose parent is the USB interface itself', async () => {
    expect(await readSerialIdentity(166, 0, 'ttyACM0', roots)).toMatchObject({
      subsystem: 'usb',
      vendorId: '2341',
      productId: '0043',
      serialNumber: '85736323838351F0C0A1',
      manufacturer: 'Arduino (www.arduino.cc)',
      interfaceNumber: '02',
    });
  });

  it('falls back to /sys/class/tty/<name> and reports a non-USB port by subsystem only', async () => {
    expect(await readSerialIdentity(4, 64, 'ttyS0', roots)).toEqual({ subsystem: 'platform' });
  });

  it('uses the udev database where sysfs has nothing, decoding \\x20 escapes', async () => {
    expect(await readSerialIdentity(166, 1, 'ttyUSB7', roots)).toEqual({
      vendorId: '1a86',
      productId: '7523',
      serialNumber: 'CH340-9',
      manufacturer: 'QinHeng Electronics',
      product: 'USB Serial',
      interfaceNumber: '00',
    });
  });

  it('returns nothing for a pty and for missing roots', async () => {
    expect(await readSerialIdentity(136, 3, '3', roots)).toEqual({});
    expect(
      await readSerialIdentity(188, 0, 'ttyUSB0', { sysfsRoot: '/nonexistent', udevDataDir: '/nonexistent' }),
    ).toEqual({});
  });
});

describe('parseUdevData', () => {
  it('prefers the ID_USB_* keys of newer udev and ignores other lines', () => {
    const text =
      'S:serial/by-id/x\nE:ID_VENDOR_ID=aaaa\nE:ID_USB_VENDOR_ID=0403\nE:ID_USB_MODEL_ID=6015\nI:123\nE:ID_USB_SERIAL_SHORT=DN0\n';
    expect(parseUdevData(text)).toEqual({ vendorId: '0403', productId: '6015', serialNumber: 'DN0' });
  });
});

describe('the handler on the fake sysfs (real /dev/null and /dev/zero posing as USB ports)', () => {
  async function firstList(details: Parameters<ReturnType<typeof createSerialHandler>['discover']>[0]) {
    const run = new DiscoveryRun(createSerialHandler({ roots }), details, serialTestLogger());
    try {
      return (await run.waitFor(() => true, 2_000)).devices;
    } finally {
      await run.stop();
    }
  }

  it('names a USB port vendor:product:serial and fills every property', { timeout: 5_000 }, async () => {
    expect(await firstList({ paths: ['/dev/null'] })).toEqual([
      {
        id: '0403:6001:A12345',
        properties: {
          SERIAL_DEVICE_PATH: '/dev/null',
          SERIAL_VENDOR_ID: '0403',
          SERIAL_PRODUCT_ID: '6001',
          SERIAL_SERIAL_NUMBER: 'A12345',
          SERIAL_MANUFACTURER: 'FTDI',
          SERIAL_PRODUCT: 'FT232R USB UART',
        },
        deviceNodes: [{ hostPath: '/dev/null', containerPath: '/dev/null', permissions: 'rw' }],
      },
    ]);
  });

  it('applies the USB identity filters', { timeout: 5_000 }, async () => {
    const paths = ['/dev/null', '/dev/zero'];
    const ids = async (extra: object) => (await firstList({ paths, ...extra })).map((d) => d.id);
    expect(await ids({})).toEqual(['0403:6001:A12345', '2341:0043:85736323838351F0C0A1:02']);
    expect(await ids({ vendorIds: { include: ['0x403'] } })).toEqual(['0403:6001:A12345']);
    expect(await ids({ vendorIds: { exclude: ['0403'] } })).toEqual(['2341:0043:85736323838351F0C0A1:02']);
    expect(await ids({ manufacturers: { include: ['arduino (WWW.ARDUINO.CC)'] } })).toEqual([
      '2341:0043:85736323838351F0C0A1:02',
    ]);
    expect(await ids({ serialNumbers: { include: ['nope'] } })).toEqual([]);
  });
});
