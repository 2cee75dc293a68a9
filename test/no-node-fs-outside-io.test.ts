/**
 * Goal: every file access of the engine goes through FileIO (DESIGN.md section 2), so SimDisk
 * sees all of it: only engine/io/real-io.ts may import node:fs, node:fs/promises or fs-ext.
 * Method: read every .ts source under engine/, volume/ and checkpointer/ and look for static
 * imports, re-exports, dynamic imports and require() calls of those modules.
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ALLOWED = new Set(['engine/io/real-io.ts']);
const FS_MODULE = String.raw`(?:node:)?fs(?:/promises)?|fs-ext|(?:node:)?original-fs`;
const PATTERNS = [
  new RegExp(String.raw`\bfrom\s*['"](${FS_MODULE})['"]`), // import ... from / export ... from
  new RegExp(String.raw`\bimport\s*['"](${FS_MODULE})['"]`), // side-effect import
  new RegExp(String.raw`\bimport\s*\(\s*['"](${FS_MODULE})['"]\s*\)`), // dynamic import
  new RegExp(String.raw`(?:\brequire\s*|\)\s*)\(\s*['"](${FS_MODULE})['"]\s*\)`), // require('fs'), createRequire(...)('fs')
];

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out; // a folder that does not exist yet
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

function fsImports(text: string): string[] {
  const found: string[] = [];
  for (const line of text.split('\n')) {
    for (const re of PATTERNS) {
      const m = re.exec(line);
      if (m) found.push(m[1]!);
    }
  }
  return found;
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

  it('only engine/io/real-io.ts imports node:fs, node:fs/promises or fs-ext in engine/, volume/, checkpointer/', async () => {
    const files = (await Promise.all(['engine', 'volume', 'checkpointer'].map((d) => sources(join(root, d))))).flat();
    expect(files.length).toBeGreaterThan(10);
    const offenders: string[] = [];
    let realIoImports: string[] = [];
    for (const f of files) {
      const rel = relative(root, f).split('\\').join('/');
      const found = fsImports(await readFile(f, 'utf8'));
      if (ALLOWED.has(rel)) realIoImports = found;
      else if (found.length > 0) offenders.push(`${rel}: ${found.join(', ')}`);
    }
    expect(offenders).toEqual([]);
    expect(realIoImports).toContain('node:fs'); // the check does see the one allowed import
  });
});
