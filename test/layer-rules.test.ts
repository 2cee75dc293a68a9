/**
 * Goal: the layers of DESIGN.md section 1 hold for every source file, so a wrong arrow fails
 * here the day it is written instead of going unnoticed (three did: cli and bench importing each
 * other, bench reaching into engine/checksum.ts, engine/index.ts re-exporting from checkpointer/).
 * The arrows allowed:
 *  - engine/: its own files; checkpointer/ only from engine/engine.ts, which satisfies the
 *    interfaces the checkpointer declares; never volume/, cmdline/, cli/ or bench/.
 *  - checkpointer/: its own files only.
 *  - volume/: its own files and engine/index.ts (the extension API) only: the proof that an
 *    outside extension can do the same.
 *  - cmdline/ (the plumbing every command shares), cli/ and bench/: their own files and the
 *    package's public entry points (the files package.json `exports` names: lamstore,
 *    lamstore/volume, lamstore/testing), as any user; cli/ and bench/ also cmdline/; and
 *    cli/main.ts loads the bench command through bench/command.ts (`addBenchCommand(program)`,
 *    the one function every command exports), nothing else of bench/.
 *  - no source file imports a test file, and no two files import each other in a circle.
 * Method: every .ts file of the folders tsconfig.build.json compiles, its imports found as text
 * (helpers/imports.ts) and resolved to repository paths; each arrow is judged by the rules
 * above, type-only imports too (a type is part of what a layer exposes). The rules themselves are
 * checked on arrows that must pass and arrows that must fail, so a rule that allows everything
 * fails too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, importGraph, importsOf, sourceFiles } from './helpers/imports.js';

/** The source folders: what the build compiles (a new folder needs a rule here). */
const FOLDERS: string[] = (JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] }).include;

/** The package's public entry points as source files ('./dist/engine/index.js' -> 'engine/index.ts'). */
const PUBLIC_ENTRY_POINTS: ReadonlySet<string> = (() => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, string | { default?: string }> };
  const out = new Set<string>();
  for (const target of Object.values(pkg.exports)) {
    const file = typeof target === 'string' ? target : target.default;
    const m = file === undefined ? null : /^\.\/dist\/(.+)\.js$/.exec(file);
    if (m) out.add(`${m[1]}.ts`);
  }
  return out;
})();

function folderOf(file: string): string {
  return file.split('/')[0]!;
}

/** What each folder may import: `allows` judges arrows out of the folder, `may` says it in words. */
const LAYERS: Record<string, { may: string; allows: (from: string, to: string) => boolean }> = {
  engine: {
    may: 'its own files, and checkpointer/ from engine/engine.ts only',
    allows: (from, to) => folderOf(to) === 'checkpointer' && from === 'engine/engine.ts',
  },
  checkpointer: { may: 'its own files only', allows: () => false },
  volume: { may: 'its own files and engine/index.ts only', allows: (_from, to) => to === 'engine/index.ts' },
  cmdline: { may: 'its own files and the public entry points only', allows: (_from, to) => PUBLIC_ENTRY_POINTS.has(to) },
  cli: {
    may: 'its own files, cmdline/, the public entry points, and bench/command.ts from cli/main.ts only',
    allows: (from, to) => PUBLIC_ENTRY_POINTS.has(to) || folderOf(to) === 'cmdline' || (from === 'cli/main.ts' && to === 'bench/command.ts'),
  },
  bench: {
    may: 'its own files, cmdline/ and the public entry points only',
    allows: (_from, to) => PUBLIC_ENTRY_POINTS.has(to) || folderOf(to) === 'cmdline',
  },
};

/** Why the arrow `from` -> `to` is refused, or null when a rule allows it. */
function refusal(from: string, to: string): string | null {
  const source = folderOf(from);
  const layer = LAYERS[source];
  if (!layer) return `${source}/ has no layer rule`;
  if (!FOLDERS.includes(folderOf(to))) {
    // Data such as package.json may be read; code outside the source folders (tests) may not.
    return to.endsWith('.ts') ? `${to} is not production code` : null;
  }
  if (folderOf(to) === source || layer.allows(from, to)) return null;
  return `${source}/ may import ${layer.may}`;
}

/** Every circle of imports (strongly connected component of more than one file, or a self-import). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  // Tarjan's algorithm: one depth-first pass, each file's lowest reachable index on the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

const FILES = FOLDERS.flatMap((f) => sourceFiles(f)).filter((f) => !f.endsWith('.test.ts'));
const GRAPH = importGraph(FILES);

describe('layer rules (DESIGN.md section 1)', () => {
  it('the scanner finds every form of import, also over several lines, and not one a comment mentions', () => {
    const text = [
      `import { a,`,
      `  b } from '../engine/index.js';`,
      `import type { C } from "./c.js";`,
      `export { d } from './d.js';`,
      `export * from './e.js';`,
      `import './side-effect.js';`,
      `const f = await import('./f.js');`,
      `const g = createRequire(import.meta.url)('../../package.json');`,
      ` * import { x } from '../bench/x.js' (a doc comment)`,
      `// export { y } from '../cli/y.js';`,
      `const s = "import z from './z.js'";`,
    ].join('\n');
    expect(importsOf(text).map((r) => [r.specifier, r.line, r.typeOnly])).toEqual([
      ['../engine/index.js', 1, false],
      ['./c.js', 3, true],
      ['./d.js', 4, false],
      ['./e.js', 5, false],
      ['./side-effect.js', 6, false],
      ['./f.js', 7, false],
      ['../../package.json', 8, false],
    ]);
  });

  it('the rules refuse the arrows DESIGN.md forbids and allow the ones it names', () => {
    const judged = (from: string, to: string) => refusal(from, to) === null;
    const allowed: [string, string][] = [
      ['engine/engine.ts', 'checkpointer/checkpointer.ts'],
      ['engine/md/md.ts', 'engine/relfile.ts'],
      ['volume/volume.ts', 'engine/index.ts'],
      ['cli/create.ts', 'volume/index.ts'],
      ['cli/create.ts', 'cmdline/args.ts'],
      ['cli/main.ts', 'bench/command.ts'],
      ['bench/command.ts', 'cmdline/failure.ts'],
      ['bench/matrix.ts', 'engine/index.ts'],
      ['cli/main.ts', '../package.json'],
    ];
    const refused: [string, string][] = [
      ['engine/relation.ts', 'volume/index.ts'],
      ['engine/index.ts', 'checkpointer/checkpointer.ts'],
      ['engine/engine.ts', 'cli/main.ts'],
      ['engine/engine.ts', 'bench/run.ts'],
      ['checkpointer/checkpointer.ts', 'engine/errors.ts'],
      ['volume/volume.ts', 'engine/checksum.ts'],
      ['volume/volume.ts', 'checkpointer/checkpointer.ts'],
      ['bench/page-path-measure.ts', 'engine/checksum.ts'],
      ['bench/command.ts', 'cli/args.ts'],
      ['bench/run.ts', 'cli/main.ts'],
      ['cli/main.ts', 'bench/run.ts'],
      ['cli/create.ts', 'bench/command.ts'],
      ['cli/map.ts', 'volume/volume.ts'],
      ['cmdline/failure.ts', 'cli/main.ts'],
      ['bench/matrix.ts', 'test/helpers/index.ts'],
    ];
    expect(allowed.filter(([from, to]) => !judged(from, to))).toEqual([]);
    expect(refused.filter(([from, to]) => judged(from, to))).toEqual([]);
    expect(PUBLIC_ENTRY_POINTS.has('engine/index.ts') && PUBLIC_ENTRY_POINTS.has('volume/index.ts')).toBe(true);
  });

  it('every source folder has a rule', () => {
    expect(FOLDERS.filter((f) => !LAYERS[f])).toEqual([]);
    expect(FILES.length).toBeGreaterThan(50);
  });

  it('every import of every source file follows the rules', () => {
    const broken: string[] = [];
    let arrows = 0;
    for (const [from, edges] of GRAPH) {
      for (const { to, ref } of edges) {
        arrows++;
        const why = refusal(from, to);
        if (why) broken.push(`${from}:${ref.line} imports ${to}: ${why}`);
      }
    }
    expect(broken).toEqual([]);
    expect(arrows).toBeGreaterThan(100); // the scan does see the imports it judges
  });

  it('no import cycles between files', () => {
    expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c']]);
    expect(cycles(new Map([['a', ['b']], ['b', []]]))).toEqual([]);
    const graph = new Map([...GRAPH].map(([from, edges]) => [from, edges.map((e) => e.to)]));
    expect(cycles(graph)).toEqual([]);
  });
});
