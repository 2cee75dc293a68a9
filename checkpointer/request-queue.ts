/**
 * The sync request queue between the storage managers (PostgreSQL's backends) and the
 * checkpointer: checkpointer.c's ring of CheckpointerRequest plus ForwardSyncRequest,
 * CompactCheckpointerRequestQueue and the batching of AbsorbSyncRequests.
 *
 * It knows nothing of FileTags: a request is opaque, and `keyOf` (given by the engine) returns
 * the canonical bytes of type + tag that compaction compares.
 *
 * Invariants:
 *  Q1 0 <= length <= capacity; requests leave in FIFO order.
 *  Q2 Compaction keeps the LAST occurrence of each identical request and the order of the
 *     survivors: keeping the last preserves meaning when FORGETs are interleaved with SYNCs.
 *  Q3 `forward` never blocks; a full queue that compaction cannot shrink refuses (false), and the
 *     caller decides (sync the file itself, or retry).
 */

/** PostgreSQL's CKPT_REQ_BATCH_SIZE: absorb at most this many requests per batch. */
export const ABSORB_BATCH_SIZE = 10_000;

/** PostgreSQL's MAX_CHECKPOINT_REQUESTS bound on the queue length. */
export const SYNC_QUEUE_SIZE_MAX = 10_000_000;

/** Default queue size: one slot per shared buffer, as PostgreSQL sizes its ring. */
export function defaultSyncQueueSize(sharedBuffers: number): number {
  return Math.max(1, Math.min(sharedBuffers, SYNC_QUEUE_SIZE_MAX));
}

export interface RequestQueueStats {
  forwarded: number;
  refused: number;
  compactions: number;
  /** Requests removed by compaction. */
  compactedAway: number;
}

export class SyncRequestQueue<R> {
  readonly capacity: number;
  readonly #keyOf: (request: R) => string;
  readonly #ring: (R | undefined)[];
  #head = 0;
  #length = 0;
  /** Called when a forward makes the queue at least half full (wake the checkpointer). */
  onHalfFull: (() => void) | undefined;
  readonly stats: RequestQueueStats = { forwarded: 0, refused: 0, compactions: 0, compactedAway: 0 };

  constructor(capacity: number, keyOf: (request: R) => string) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > SYNC_QUEUE_SIZE_MAX) {
      throw new RangeError(`syncQueueSize must be an integer in 1..${SYNC_QUEUE_SIZE_MAX}, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#keyOf = keyOf;
    this.#ring = new Array<R | undefined>(capacity);
  }

  get length(): number {
    return this.#length;
  }

  /** ForwardSyncRequest: enqueue, compacting first if full. False when it cannot (Q3). */
  forward(request: R): boolean {
    if (this.#length >= this.capacity && !this.compact()) {
      this.stats.refused++;
      return false;
    }
    this.#ring[(this.#head + this.#length) % this.capacity] = request;
    this.#length++;
    this.stats.forwarded++;
    // Wake the checkpointer when this request makes the queue half full (behaviour 33).
    if (this.#length * 2 >= this.capacity && (this.#length - 1) * 2 < this.capacity) this.onHalfFull?.();
    return true;
  }

  /** CompactCheckpointerRequestQueue: drop all but the last of each identical request (Q2). */
  compact(): boolean {
    const items: R[] = [];
    for (let i = 0; i < this.#length; i++) items.push(this.#ring[(this.#head + i) % this.capacity] as R);
    const lastIndex = new Map<string, number>();
    items.forEach((r, i) => lastIndex.set(this.#keyOf(r), i));
    if (lastIndex.size === items.length) return false;
    const kept = items.filter((r, i) => lastIndex.get(this.#keyOf(r)) === i);
    this.#ring.fill(undefined);
    kept.forEach((r, i) => (this.#ring[i] = r));
    this.#head = 0;
    this.stats.compactions++;
    this.stats.compactedAway += this.#length - kept.length;
    this.#length = kept.length;
    return true;
  }

  /** Take up to `max` requests from the head, in FIFO order (Q1). */
  take(max = ABSORB_BATCH_SIZE): R[] {
    const n = Math.min(max, this.#length);
    const out: R[] = new Array<R>(n);
    for (let i = 0; i < n; i++) {
      const slot = (this.#head + i) % this.capacity;
      out[i] = this.#ring[slot] as R;
      this.#ring[slot] = undefined;
    }
    this.#head = (this.#head + n) % this.capacity;
    this.#length -= n;
    return out;
  }

  /** Q1 and the ring's shape: slots outside [head, head + length) hold nothing. Called from tests. */
  checkInvariants(): void {
    const fail = (what: string): never => {
      throw new Error(`lamstore assertion failed: sync request queue: ${what}`);
    };
    if (!(this.#length >= 0 && this.#length <= this.capacity)) fail(`length ${this.#length} outside 0..${this.capacity}`);
    if (!(this.#head >= 0 && this.#head < this.capacity)) fail(`head ${this.#head} outside the ring`);
    for (let i = this.#length; i < this.capacity; i++) {
      if (this.#ring[(this.#head + i) % this.capacity] !== undefined) fail(`free slot ${(this.#head + i) % this.capacity} holds a request`);
    }
  }

  /** AbsorbSyncRequests: drain in batches of at most ABSORB_BATCH_SIZE until empty. */
  drain(apply: (request: R) => void, batchSize = ABSORB_BATCH_SIZE): number {
    let total = 0;
    while (this.#length > 0) {
      const batch = this.take(batchSize);
      for (const r of batch) apply(r);
      total += batch.length;
    }
    return total;
  }
}
