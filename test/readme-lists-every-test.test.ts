/**
 * Goal: test/README.md stays true about which test files exist: its files table has a row for
 * every `*.test.ts` under test/, and every test file the README names anywhere (files table,
 * behaviour table, prose) exists. A new test file without a row, or a row left behind by a
 * renamed or deleted file, fails here with the names.
 * Method: list test/ recursively and read the README; a row is a table line whose first cell is
 * a file name in backquotes (`name.test.ts` or `test/name.test.ts`); names are compared relative
 * to test/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const TEST_DIR = dirname(fileURLToPath(import.meta.url));
const README = readFileSync(join(TEST_DIR, 'README.md'), 'utf8');

/** Every `*.test.ts` under test/ (node_modules and dot directories skipped), relative to test/. */
function testFiles(dir = TEST_DIR): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...testFiles(path));
    else if (entry.name.endsWith('.test.ts')) out.push(relative(TEST_DIR, path).split(sep).join('/'));
  }
  return out.sort();
}

/** `test/a.test.ts` and `a.test.ts` both name test/a.test.ts. */
function normalize(name: string): string {
  return name.replace(/^(\.\/)?test\//, '');
}

/** First cells of table rows that hold a backquoted test file name. */
function tableRows(markdown: string): string[] {
  const rows: string[] = [];
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`([^`]+\.test\.ts)`\s*\|/.exec(line);
    if (m) rows.push(normalize(m[1]!));
  }
  return rows;
}

/** Every test file name the README mentions anywhere. */
function mentioned(markdown: string): string[] {
  const names = new Set<string>();
  for (const m of markdown.matchAll(/[\w./-]*[\w-]\.test\.ts/g)) names.add(normalize(m[0]));
  return [...names].sort();
}

describe('test/README.md', () => {
  it('its files table has a row for every test file', () => {
    const files = testFiles();
    expect(files.length).toBeGreaterThan(0);
    const rows = new Set(tableRows(README));
    const missing = files.filter((f) => !rows.has(f));
    expect(missing, `test files without a row in test/README.md: ${missing.join(', ')}`).toEqual([]);
  });

  it('every test file it names exists', () => {
    const files = new Set(testFiles());
    const unknown = mentioned(README).filter((f) => !files.has(f));
    expect(unknown, `test/README.md names test files that do not exist: ${unknown.join(', ')}`).toEqual([]);
  });

  it('no test file has two rows', () => {
    const seen = new Set<string>();
    const twice = tableRows(README).filter((f) => (seen.has(f) ? true : (seen.add(f), false)));
    expect(twice, `test files with more than one row in test/README.md: ${twice.join(', ')}`).toEqual([]);
  });
});
