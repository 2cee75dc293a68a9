/**
 * Options objects refuse keys they do not know (DESIGN.md section 6). A typo (`sharedBufers`)
 * or an option from a newer version (`snapshot` before snapshots exist) would otherwise be
 * dropped without a word, and the caller would run with a default they did not ask for.
 *
 * `optionKeys<T>({ ... })` lists the keys of an options interface as an object literal typed
 * by that interface's keys, so the compiler refuses a list that misses a field or adds one
 * that the interface does not have: the runtime list cannot drift from the type.
 */
import { ErrorCode, LamstoreError } from './errors.js';

/** The keys of options type `T`, every one listed exactly once (checked by the compiler). */
export function optionKeys<T extends object>(keys: { readonly [K in keyof Required<T>]: true }): readonly string[] {
  return Object.freeze(Object.keys(keys));
}

/**
 * Throw BAD_ARGUMENT `unknown option "<key>" for <what> (known: a, b, c)` for the first own
 * key of `options` that is not in `known`. A key whose value is undefined counts: a typo is a
 * typo whatever it holds. Something that is not an object is BAD_ARGUMENT too (callers that
 * want their own wording for that check it first).
 */
export function checkOptionKeys(options: unknown, known: readonly string[], what: string): void {
  if (typeof options !== 'object' || options === null) {
    throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `${what} options must be an object { ${known.join(', ')} }, got ${options === null ? 'null' : typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new LamstoreError(ErrorCode.BAD_ARGUMENT, `unknown option "${key}" for ${what} (known: ${known.join(', ')})`);
    }
  }
}
