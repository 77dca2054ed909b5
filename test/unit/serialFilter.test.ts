import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Candidate } from '../../discovery-handlers/serial/candidates.js';
import { serialDeviceId, toDiscoveredDevice } from '../../discovery-handlers/serial/device.js';
import { failedFilter, normaliseHexId, passesFilter } from '../../discovery-handlers/serial/filter.js';
import { expandGlob, globBaseDir, segmentRegExp } from '../../discovery-handlers/serial/glob.js';

describe('USB identity filters', () => {
  it('normalises hex ids', () => {
    expect(normaliseHexId('0x403')).toBe('0403');
    expect(normaliseHexId(' 6001 ')).toBe('6001');
    expect(normaliseHexId('ABCD')).toBe('abcd');
    expect(normaliseHexId('not-hex')).toBe('not-hex');
  });

  it('include keeps listed values only, and drops unknown values', () => {
    const filter = { include: ['FTDI', 'Silicon Labs'] };
    expect(passesFilter(filter, 'ftdi')).toBe(true);
    expect(passesFilter(filter, 'Prolific')).toBe(false);
    expect(passesFilter(filter, undefined)).toBe(false);
  });

  it('exclude drops listed values and lets unknown values pass', () => {
    const filter = { exclude: ['0403'] };
    expect(passesFilter(filter, '0x0403', normaliseHexId)).toBe(false);
    expect(passesFilter(filter, '10c4', normaliseHexId)).toBe(true);
    expect(passesFilter(filter, undefined, normaliseHexId)).toBe(true);
  });

  it('include and exclude together, empty lists and no filter', () => {
    expect(passesFilter({ include: ['a', 'b'], exclude: ['b'] }, 'b')).toBe(false);
    expect(passesFilter({ include: ['a', 'b'], exclude: ['b'] }, 'a')).toBe(true);
    expect(passesFilter({ include: [] }, undefined)).toBe(true);
    expect(passesFilter(undefined, undefined)).toBe(true);
  });

  it('reports the first filter a port fails', () => {
    const identity = { vendorId: '0403', productId: '6001', serialNumber: 'A1', manufacturer: 'FTDI' };
    expect(failedFilter({}, identity)).toBeUndefined();
    expect(failedFilter({ vendorIds: { include: ['10c4'] } }, identity)).toBe('vendorIds');
    expect(failedFilter({ productIds: { exclude: ['0x6001'] } }, identity)).toBe('productIds');
    expect(
      failedFilter({ serialNumbers: { include: ['a1'] }, manufacturers: { exclude: ['ftdi'] } }, identity),
    ).toBe('manufacturers');
    expect(failedFilter({ serialNumbers: { include: ['A1'] } }, {})).toBe('serialNumbers');
  });
});

describe('device ids and properties', () => {
  const candidate: Candidate = {
    path: '/dev/serial/by-id/usb-x',
    realPath: '/dev/ttyUSB1',
    major: 188,
    minor: 1,
    key: 'k',
  };

  it('uses vendor:product:serial, with the interface for second and later ports', () => {
    const usb = { vendorId: '403', productId: '6010', serialNumber: 'FT1' };
    expect(serialDeviceId(candidate, usb)).toBe('0403:6010:FT1');
    expect(serialDeviceId(candidate, { ...usb, interfaceNumber: '00' })).toBe('0403:6010:FT1');
    expect(serialDeviceId(candidate, { ...usb, interfaceNumber: '01' })).toBe('0403:6010:FT1:01');
  });

  it('falls back to the resolved path without a serial number', () => {
    expect(serialDeviceId(candidate, { vendorId: '0403', productId: '6001' })).toBe('/dev/ttyUSB1');
    expect(serialDeviceId(candidate, {})).toBe('/dev/ttyUSB1');
  });

  it('sets only the properties it knows, and mounts the real node at the configured path', () => {
    expect(toDiscoveredDevice(candidate, { vendorId: '403' }, 'HELLO')).toEqual({
      id: '/dev/ttyUSB1',
      properties: {
        SERIAL_DEVICE_PATH: '/dev/serial/by-id/usb-x',
        SERIAL_VENDOR_ID: '0403',
        SERIAL_PROBE_REPLY: 'HELLO',
      },
      deviceNodes: [
        { hostPath: '/dev/ttyUSB1', containerPath: '/dev/serial/by-id/usb-x', permissions: 'rw' },
      ],
    });
  });
});

describe('path globs', () => {
  it('matches one segment shell-style', () => {
    expect(segmentRegExp('ttyUSB*').test('ttyUSB12')).toBe(true);
    expect(segmentRegExp('ttyUSB*').test('ttyACM0')).toBe(false);
    expect(segmentRegExp('tty?0').test('ttyS0')).toBe(true);
    expect(segmentRegExp('tty[AU]*').test('ttyACM0')).toBe(true);
    expect(segmentRegExp('tty[!AU]*').test('ttyACM0')).toBe(false);
    expect(segmentRegExp('tty[0-3]').test('tty2')).toBe(true);
    expect(segmentRegExp('a.b+(c)').test('a.b+(c)')).toBe(true);
    expect(segmentRegExp('a.b').test('axb')).toBe(false);
  });

  it('finds the directory to watch', () => {
    expect(globBaseDir('/dev/ttyUSB*')).toBe('/dev');
    expect(globBaseDir('/dev/serial/by-id/*')).toBe('/dev/serial/by-id');
    expect(globBaseDir('/dev/serial/*/x')).toBe('/dev/serial');
    expect(globBaseDir('/dev/ttyS0')).toBe('/dev');
    expect(globBaseDir('/*')).toBe('/');
  });

  it('expands against a directory tree, skipping dotfiles unless asked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lb-glob-'));
    try {
      await mkdir(join(dir, 'a'));
      await mkdir(join(dir, 'b'));
      for (const f of ['a/tty1', 'a/tty2', 'a/.tty3', 'b/tty9', 'b/other']) await writeFile(join(dir, f), '');
      expect(await expandGlob(`${dir}/a/tty*`)).toEqual([`${dir}/a/tty1`, `${dir}/a/tty2`]);
      expect(await expandGlob(`${dir}/*/tty*`)).toEqual([`${dir}/a/tty1`, `${dir}/a/tty2`, `${dir}/b/tty9`]);
      expect(await expandGlob(`${dir}/a/.tty*`)).toEqual([`${dir}/a/.tty3`]);
      expect(await expandGlob(`${dir}/missing/*`)).toEqual([]);
      expect(await expandGlob(`${dir}/b/other`)).toEqual([`${dir}/b/other`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
