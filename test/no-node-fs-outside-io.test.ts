/**
 * Goal: every file access of the engine goes through FileIO (DESIGN.md section 2), so SimDisk
 * sees all of it: only engine/io/real-io.ts may import node:fs, node:fs/promises or fs-ext, and
 * RealIO's own sync thread (engine/io/sync-thread.ts), which fsyncs the descriptors RealIO hands it.
 * Method: read every .ts source under engine/, volume/, checkpointer/ and cmdline/ and look for
 * static imports, re-exports, dynamic imports and require() calls of those modules
 * (helpers/imports.ts, the scanner the layer rules use too).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, importsOf, sourceFiles } from './helpers/imports.js';

const ALLOWED = new Set(['engine/io/real-io.ts', 'engine/io/sync-thread.ts']);
const FS_MODULE = /^(?:(?:node:)?fs(?:\/promises)?|fs-ext|(?:node:)?original-fs)$/;

function fsImports(text: string): string[] {
  return importsOf(text)
    .map((r) => r.specifier)
    .filter((s) => FS_MODULE.test(s));
}

describe('file access only through FileIO', () => {
  it('the pattern recognises every form of import it must catch', () => {
    expect(fsImports(`import * as fs from 'node:fs';`)).toEqual(['node:fs']);
    expect(fsImports(`import { readFile } from "fs/promises";`)).toEqual(['fs/promises']);
    expect(fsImports(`export { open } from 'node:fs/promises';`)).toEqual(['node:fs/promises']);
    expect(fsImports(`import 'fs';`)).toEqual(['fs']);
    expect(fsImports(`const fs = await import('node:fs');`)).toEqual(['node:fs']);
    expect(fsImports(`const x = createRequire(import.meta.url)('fs-ext');`)).toEqual(['fs-ext']);
    expect(fsImports(`const fs = require('fs');`)).toEqual(['fs']);
    expect(fsImports(`import { join } from 'node:path'; // fs is mentioned here`)).toEqual([]);
    expect(fsImports(`import type { FileIO } from './io/file-io.js';`)).toEqual([]);
  });

  it('only engine/io/real-io.ts (and its sync thread) imports node:fs, node:fs/promises or fs-ext in engine/, volume/, checkpointer/, cmdline/', async () => {
    const files = ['engine', 'volume', 'checkpointer', 'cmdline'].flatMap((d) => sourceFiles(d));
    expect(files.length).toBeGreaterThan(10);
    const offenders: string[] = [];
    let realIoImports: string[] = [];
    for (const rel of files) {
      const found = fsImports(await readFile(join(ROOT, rel), 'utf8'));
      if (rel === 'engine/io/real-io.ts') realIoImports = found;
      else if (ALLOWED.has(rel)) continue;
      else if (found.length > 0) offenders.push(`${rel}: ${found.join(', ')}`);
    }
    expect(offenders).toEqual([]);
    expect(realIoImports).toContain('node:fs'); // the check does see the one allowed import
  });
});
