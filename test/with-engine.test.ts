/**
 * Goal: `withEngine` (helpers/engine.ts), the shape most engine tests run in, closes the engine
 * whatever the test does and never hides a failure: not the test's, not the close's.
 * Method: withEngine on SimDisk around bodies that pass, throw, or leave the engine failed (a
 * failed fsync); whether the engine was closed is read from the data directory lock, which a
 * second open can only take after the close.
 */
import { describe, expect, it } from 'vitest';
import { Engine, ErrorCode, ForkNumber } from '../engine/index.js';
import { SimDisk } from '../engine/testing.js';
import { REL, onDisk, pageOf, withEngine } from './helpers/engine.js';

/** True when the data directory on `disk` is free, i.e. the engine that had it is closed. */
async function released(disk: SimDisk): Promise<boolean> {
  try {
    await (await Engine.open(onDisk(disk))).close();
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === ErrorCode.DATADIR_LOCKED) return false;
    throw err;
  }
}

/** A body that leaves the engine failed: a write, then a checkpoint whose fsync fails. */
async function failEngine(disk: SimDisk, engine: Engine): Promise<void> {
  const rel = engine.relation(REL);
  await rel.create(ForkNumber.MAIN);
  await rel.extend(ForkNumber.MAIN, pageOf(1));
  disk.injectFault({ kind: 'fsync', code: 'EIO' });
  await engine.checkpoint().catch(() => {});
  expect(engine.failed).toBe(true);
}

describe('withEngine', () => {
  it("returns the body's result and closes the engine", async () => {
    const disk = new SimDisk();
    let open: boolean | undefined;
    const result = await withEngine(onDisk(disk), async () => {
      open = !(await released(disk));
      return 42;
    });
    expect(result).toBe(42);
    expect(open).toBe(true);
    expect(await released(disk)).toBe(true);
  });

  it("closes the engine when the body throws, and rejects with the body's error", async () => {
    const disk = new SimDisk();
    const thrown = new Error('the body failed');
    await expect(
      withEngine(onDisk(disk), async () => {
        throw thrown;
      }),
    ).rejects.toBe(thrown);
    expect(await released(disk)).toBe(true);
  });

  it("rejects with the close's error when only the close fails (a failed engine nobody expected)", async () => {
    const disk = new SimDisk();
    await expect(withEngine(onDisk(disk), (engine) => failEngine(disk, engine))).rejects.toMatchObject({ code: ErrorCode.ENGINE_FAILED });
    expect(await released(disk)).toBe(true);
  });

  it('rejects with both errors when the body throws and the close fails too', async () => {
    const disk = new SimDisk();
    const thrown = new Error('an assertion after the failure');
    const err = await withEngine(onDisk(disk), async (engine) => {
      await failEngine(disk, engine);
      throw thrown;
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    const [first, second] = (err as AggregateError).errors;
    expect(first).toBe(thrown);
    expect(second).toMatchObject({ code: ErrorCode.ENGINE_FAILED });
  });

  it('closeRejects: passes when the close rejects with that code, fails when it does not', async () => {
    const disk = new SimDisk();
    await withEngine(onDisk(disk), (engine) => failEngine(disk, engine), { closeRejects: ErrorCode.ENGINE_FAILED });
    expect(await released(disk)).toBe(true);
    await expect(withEngine(onDisk(new SimDisk()), async () => {}, { closeRejects: ErrorCode.ENGINE_FAILED })).rejects.toThrow(
      'engine.close() resolved; the test expected it to reject with ENGINE_FAILED',
    );
  });
});
