/**
 * What a source file imports, read as text: the module specifiers of its static imports and
 * re-exports (also spread over several lines), side-effect imports, dynamic `import('...')` and
 * `require('...')` calls. Used by the tests that hold the tree to its import rules (the layers
 * of DESIGN.md section 1, file access only through FileIO).
 *
 * Why text and not the compiler: TypeScript 7's `tsc` is a native binary without the JS API
 * that would hand out the syntax tree, and the forms to find are few. A static import or
 * re-export is found only where a statement starts a line (`^import`, `^export`), so a comment
 * or a string that mentions one is not taken for it; dynamic imports and require calls are found
 * anywhere, so a comment naming one is reported too (loudly wrong rather than silently blind).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ImportRef {
  /** The module specifier as written ('../engine/index.js', 'node:fs'). */
  specifier: string;
  /** 1-based line of the statement's first line. */
  line: number;
  /** `import type` / `export type`: erased at compile time. */
  typeOnly: boolean;
}

const STATIC = /^[ \t]*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s*)?['"]([^'"\n]+)['"]/gm;
const DYNAMIC = /\bimport\s*\(\s*['"]([^'"\n]+)['"]\s*\)/g;
const REQUIRE = /(?:\brequire\s*|\)\s*)\(\s*['"]([^'"\n]+)['"]\s*\)/g;

function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < index; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** Every import of a source text, in the order found (static ones first). */
export function importsOf(text: string): ImportRef[] {
  const out: ImportRef[] = [];
  for (const m of text.matchAll(STATIC)) out.push({ specifier: m[2]!, line: lineAt(text, m.index), typeOnly: m[1] !== undefined });
  for (const re of [DYNAMIC, REQUIRE]) {
    for (const m of text.matchAll(re)) out.push({ specifier: m[1]!, line: lineAt(text, m.index), typeOnly: false });
  }
  return out;
}

/** The repository root (the folder of package.json). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A path relative to the root with forward slashes ('engine/index.ts'). */
export function repoPath(absolute: string): string {
  return relative(ROOT, absolute).split(sep).join('/');
}

/** Every `.ts` file under the root's `folder` (recursively), as repository paths, sorted. */
export function sourceFiles(folder: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // a folder that does not exist (yet)
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(repoPath(p));
    }
  };
  walk(join(ROOT, folder));
  return out.sort();
}

/**
 * The repository file a relative specifier of `fromFile` names ('../engine/index.js' from
 * 'volume/smgr.ts' is 'engine/index.ts': sources import the `.js` the compiler will emit), or
 * null for a package or built-in module.
 */
export function resolveImport(fromFile: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  const target = repoPath(resolve(ROOT, dirname(fromFile), specifier));
  return target.endsWith('.js') ? `${target.slice(0, -3)}.ts` : target;
}

/** The import graph of `files`: each file's imports resolved to repository paths. */
export function importGraph(files: readonly string[]): Map<string, { to: string; ref: ImportRef }[]> {
  const graph = new Map<string, { to: string; ref: ImportRef }[]>();
  for (const file of files) {
    const edges: { to: string; ref: ImportRef }[] = [];
    for (const ref of importsOf(readFileSync(join(ROOT, file), 'utf8'))) {
      const to = resolveImport(file, ref.specifier);
      if (to !== null) edges.push({ to, ref });
    }
    graph.set(file, edges);
  }
  return graph;
}
