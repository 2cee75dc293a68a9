/**
 * Goal: command-line sizes and counts are parsed strictly: every malformed value from
 * reliability-anchors 8(d)'s list is refused with a message naming the option and the value.
 * Method: the parsing functions directly (the spawned-CLI tests check exit codes and output).
 */
import { describe, expect, it } from 'vitest';
import { UsageError, formatBytes, parseIntList, parsePositiveInt, parseSize } from '../cmdline/args.js';

describe('CLI size parsing', () => {
  it('accepts plain bytes and KiB/MiB/GiB/TiB, also k/M/G/T, in any letter case', () => {
    expect(parseSize('65536')).toBe(65536);
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('64k')).toBe(65536);
    expect(parseSize('64K')).toBe(65536);
    expect(parseSize('3MiB')).toBe(3 * 1048576);
    expect(parseSize('3M')).toBe(3 * 1048576);
    expect(parseSize('2GiB')).toBe(2 * 1024 ** 3);
    expect(parseSize('1T')).toBe(1024 ** 4);
    expect(parseSize('1tib')).toBe(1024 ** 4);
    expect(parseSize('512B')).toBe(512);
  });

  it.each(['', '-1', '-0', '0', '1.5', 'NaN', 'Infinity', '1e309', '0x10', '12abc', '10XB', ' 12 ', '12 MiB', '99999999999999999999'])(
    'refuses %j with a UsageError naming the option and the value',
    (text) => {
      let err: unknown;
      try {
        parseSize(text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toContain(`--size '${text}'`);
    },
  );

  it('counts and lists are whole positive numbers', () => {
    expect(parsePositiveInt('80', '--width')).toBe(80);
    expect(() => parsePositiveInt('0', '--width')).toThrow(UsageError);
    expect(() => parsePositiveInt('1.5', '--width')).toThrow(/--width '1.5'/);
    expect(parseIntList('10,100,1000', '--relations')).toEqual([10, 100, 1000]);
    expect(() => parseIntList('10,,1', '--relations')).toThrow(UsageError);
    expect(() => parseIntList('10,x', '--relations')).toThrow(UsageError);
  });

  it('formats byte counts for people', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(65536)).toBe('64.0 KiB');
    expect(formatBytes(3 * 1048576)).toBe('3.0 MiB');
  });
});
