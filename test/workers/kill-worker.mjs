/**
 * The child of test/campaign-kill-loop.test.ts: a process that is killed with
 * SIGKILL, by its parent at a random moment or by itself at a named point inside a checkpoint.
 *
 * Plain JavaScript on the compiled package (dist/): a child must start in a fraction of a second,
 * and a TypeScript loader costs seconds per start on a small machine. The parent makes sure
 * dist/ is built from the current sources before it forks us.
 *
 * Protocol (IPC; every message is awaited until Node handed it to the kernel, so a message sent
 * before a kill reaches the parent even though the process is gone):
 *   ready {forks}           opened the store; digests of every fork the parent listed (it
 *                           compares them with what it recovered: a second, independent reopen)
 *   c {k} / w {k,b,d} / tr {k,n} / drop {keys}
 *                           an intent, sent BEFORE the call that makes the change
 *   cb {}                   a checkpoint begins
 *   ack {forks}             engine.checkpoint() resolved: the page digests it made durable
 * Config comes in LAMSTORE_KILL_WORKER (JSON): root, seed, versionBase, killPoint, killNth,
 * killAfter, rels ([{storage, relNumber, forks}]), nextMd.
 *
 * Kill points (a FileIO wrapper around RealIO, armed only while engine.checkpoint() runs; no
 * engine code knows about them): before-page-writes (first data pwrite), between-writes (before
 * data pwrite killNth >= 2), after-volume-fdatasync (the first one returned),
 * after-metadata-write (the superblock pwrite returned), after-metadata-sync (the fdatasync after
 * it returned), segment-syncs (md segment fsync killNth, before it or after it with killAfter),
 * unlinks (before post-checkpoint unlink killNth). A checkpoint that does not reach the point
 * disarms; the workload goes on and the next checkpoint tries again.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Engine, RealIO, setPageChecksum } from '../../dist/engine/index.js';
import { prng } from '../../dist/engine/testing.js';
import { volumeExtension } from '../../dist/volume/index.js';

const cfg = JSON.parse(process.env.LAMSTORE_KILL_WORKER ?? '{}');
const BS = 4096;
const SPC = 1663;
const DB = 5;
const VOLUME_RELS = [1, 2, 3];
const FORKS = [0, 1];
const MAX_BLOCKS = { volume: 40, md: 14 };
const rand = prng(cfg.seed);
const dataDir = join(cfg.root, 'data');
const volPath = join(cfg.root, 'lam.vol');
const mdBase = join(dataDir, 'base');

function die() {
  process.kill(process.pid, 'SIGKILL');
}

function send(message) {
  return new Promise((resolve, reject) => process.send(message, (err) => (err ? reject(err) : resolve())));
}

/** RealIO with kill points (see the header). */
class KillIO {
  constructor(base) {
    this.base = base;
    this.armed = false;
  }
  arm() {
    this.armed = true;
    this.dataWrites = 0;
    this.sawMetaWrite = false;
    this.segSyncs = 0;
    this.unlinks = 0;
  }
  disarm() {
    this.armed = false;
  }
  #isData(path) {
    return path === volPath || path.startsWith(mdBase);
  }
  #beforeWrite(h) {
    if (!this.armed || !this.#isData(h.path)) return;
    this.dataWrites++;
    if (cfg.killPoint === 'before-page-writes' && this.dataWrites === 1) die();
    if (cfg.killPoint === 'between-writes' && this.dataWrites === cfg.killNth) die();
  }
  #afterWrite(h, offset) {
    if (!this.armed || h.path !== volPath || offset >= 2 * BS) return;
    this.sawMetaWrite = true;
    if (cfg.killPoint === 'after-metadata-write') die();
  }
  open(p, o) {
    return this.base.open(p, o);
  }
  close(h) {
    return this.base.close(h);
  }
  pread(h, b, o) {
    return this.base.pread(h, b, o);
  }
  async pwrite(h, b, o) {
    this.#beforeWrite(h);
    await this.base.pwrite(h, b, o);
    this.#afterWrite(h, o);
  }
  async pwritev(h, bs, o) {
    this.#beforeWrite(h);
    await this.base.pwritev(h, bs, o);
    this.#afterWrite(h, o);
  }
  async fsync(h) {
    const seg = this.armed && cfg.killPoint === 'segment-syncs' && h.path.startsWith(mdBase);
    if (seg && ++this.segSyncs === cfg.killNth && !cfg.killAfter) die();
    await this.base.fsync(h);
    if (seg && this.segSyncs === cfg.killNth) die();
  }
  async fdatasync(h) {
    await this.base.fdatasync(h);
    if (!this.armed || h.path !== volPath) return;
    if (cfg.killPoint === 'after-volume-fdatasync') die();
    if (cfg.killPoint === 'after-metadata-sync' && this.sawMetaWrite) die();
  }
  ftruncate(h, n) {
    return this.base.ftruncate(h, n);
  }
  size(h) {
    return this.base.size(h);
  }
  unlink(p) {
    if (this.armed && cfg.killPoint === 'unlinks' && ++this.unlinks === cfg.killNth) die();
    return this.base.unlink(p);
  }
  rename(a, b) {
    return this.base.rename(a, b);
  }
  mkdir(p) {
    return this.base.mkdir(p);
  }
  fsyncDir(p) {
    return this.base.fsyncDir(p);
  }
  stat(p) {
    return this.base.stat(p);
  }
  readdir(p) {
    return this.base.readdir(p);
  }
  flock(h, m) {
    return this.base.flock(h, m);
  }
}

/** A page that says which relation, fork, block and version it is (as test/helpers/volume.ts). */
function makePage(relNumber, fork, blk, version) {
  const p = new Uint8Array(BS);
  const v = new DataView(p.buffer);
  v.setUint32(0, relNumber, true);
  v.setUint32(4, blk, true);
  v.setUint32(12, fork, true);
  v.setUint32(16, version, true);
  for (let i = 20; i < BS; i += 4) v.setUint32(i, (relNumber * 7919 + blk * 104729 + version * 31 + i) >>> 0, true);
  setPageChecksum(p, blk);
  return p;
}

const digest = (page) => createHash('sha256').update(page).digest('hex').slice(0, 16);
const key = (storage, relNumber, fork) => `${storage}:${relNumber}:${fork}`;

const io = new KillIO(new RealIO());
const engine = await Engine.open({
  dataDir,
  blockSize: BS,
  sharedBuffers: 48,
  relSegBlocks: 4,
  io,
  preload: [volumeExtension({ path: volPath, create: { sizeBytes: 4 * 1024 * 1024 } })],
});

/** storage:relNumber -> { storage, relNumber, rel, forks: Map<fork, digests[]> } */
const rels = new Map();
let version = cfg.versionBase;
let nextMd = cfg.nextMd;

function relOf(storage, relNumber) {
  return engine.relation({ spcOid: SPC, dbOid: DB, relNumber }, { storage });
}

// Read back what the parent recovered.
const ready = {};
for (const r of cfg.rels) {
  const entry = { storage: r.storage, relNumber: r.relNumber, rel: relOf(r.storage, r.relNumber), forks: new Map() };
  rels.set(`${r.storage}:${r.relNumber}`, entry);
  for (const f of r.forks) {
    const n = await entry.rel.nblocks(f);
    const ds = [];
    for (let b = 0; b < n; b++) ds.push(digest(await entry.rel.read(f, b)));
    entry.forks.set(f, ds);
    ready[key(r.storage, r.relNumber, f)] = ds;
  }
}
await send({ t: 'ready', forks: ready });

async function createRel(storage, relNumber) {
  const entry = { storage, relNumber, rel: relOf(storage, relNumber), forks: new Map() };
  rels.set(`${storage}:${relNumber}`, entry);
  for (const f of FORKS) {
    await send({ t: 'c', k: key(storage, relNumber, f) });
    await entry.rel.create(f);
    entry.forks.set(f, []);
  }
}

for (const n of VOLUME_RELS) if (!rels.has(`volume:${n}`)) await createRel('volume', n);
const mdCount = () => [...rels.values()].filter((r) => r.storage === 'md').length;
while (mdCount() < 2) await createRel('md', nextMd++);

const pick = (arr) => arr[Math.floor(rand() * arr.length)];
function pickFork(filter) {
  const all = [];
  for (const r of rels.values()) for (const [f, ds] of r.forks) if (filter(r, ds)) all.push({ r, f, ds });
  return all.length ? pick(all) : undefined;
}

async function writeBlock(r, f, ds, b) {
  const page = makePage(r.relNumber, f, b, ++version);
  const d = digest(page);
  await send({ t: 'w', k: key(r.storage, r.relNumber, f), b, d });
  if (b === ds.length) await r.rel.extend(f, page);
  else await r.rel.write(f, b, page);
  ds[b] = d;
}

async function dropMd() {
  const md = [...rels.values()].filter((r) => r.storage === 'md');
  if (md.length === 0) return;
  const r = pick(md);
  await send({ t: 'drop', keys: FORKS.map((f) => key('md', r.relNumber, f)) });
  await r.rel.drop();
  rels.delete(`md:${r.relNumber}`);
}

async function checkpoint() {
  if (cfg.killPoint === 'unlinks') {
    // Give this checkpoint an unlink to do: drop one md relation, keep two.
    if (mdCount() < 3) await createRel('md', nextMd++);
    await dropMd();
  }
  await send({ t: 'cb' });
  io.arm();
  await engine.checkpoint();
  io.disarm();
  const forks = {};
  for (const r of rels.values()) for (const [f, ds] of r.forks) forks[key(r.storage, r.relNumber, f)] = [...ds];
  await send({ t: 'ack', forks });
}

let sinceCheckpoint = 0;
for (;;) {
  if ((sinceCheckpoint >= 6 && rand() < 0.12) || sinceCheckpoint >= 24) {
    await checkpoint();
    sinceCheckpoint = 0;
    continue;
  }
  sinceCheckpoint++;
  const x = rand();
  if (x < 0.45) {
    const t = pickFork((_r, ds) => ds.length > 0);
    if (t) await writeBlock(t.r, t.f, t.ds, Math.floor(rand() * t.ds.length));
  } else if (x < 0.8) {
    const t = pickFork((r, ds) => ds.length < MAX_BLOCKS[r.storage]);
    if (t) await writeBlock(t.r, t.f, t.ds, t.ds.length);
  } else if (x < 0.9) {
    const t = pickFork((_r, ds) => ds.length > 0);
    if (t) {
      const n = Math.floor(rand() * t.ds.length);
      await send({ t: 'tr', k: key(t.r.storage, t.r.relNumber, t.f), n });
      await t.r.rel.truncate(t.f, n);
      t.ds.length = n;
    }
  } else if (x < 0.95) {
    if (mdCount() < 4) await createRel('md', nextMd++);
  } else if (mdCount() > 1) {
    await dropMd();
  }
}
