/**
 * Goal: the error codes are a contract callers switch on (engine/errors.ts), so the list a
 * caller reads is the list the code has: every `ErrorCode` has a row in engine/README.md's code
 * table and every row names one, and every code is raised somewhere in the sources (a documented
 * code nothing throws, as CHECKPOINT_FAILED was, promises a case that never comes).
 * Method: read the README's table rows and the sources of engine/ and volume/; a code is raised
 * where a source file other than errors.ts names `ErrorCode.<CODE>`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../engine/index.js';
import { ROOT, sourceFiles } from './helpers/imports.js';

const CODES = Object.values(ErrorCode).sort();

function readmeCodes(): string[] {
  const text = readFileSync(join(ROOT, 'engine/README.md'), 'utf8');
  const table = text.slice(text.indexOf('## Error codes'));
  return [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!).sort();
}

describe('error codes', () => {
  it("engine/README.md's table lists exactly the codes of ErrorCode", () => {
    expect(readmeCodes()).toEqual(CODES);
  });

  it('every code is raised somewhere in engine/ or volume/', () => {
    const sources = ['engine', 'volume']
      .flatMap((d) => sourceFiles(d))
      .filter((f) => f !== 'engine/errors.ts' && !f.endsWith('/index.ts'))
      .map((f) => readFileSync(join(ROOT, f), 'utf8'))
      .join('\n');
    expect(CODES.filter((code) => !new RegExp(`\\bErrorCode\\.${code}\\b`).test(sources))).toEqual([]);
  });
});
