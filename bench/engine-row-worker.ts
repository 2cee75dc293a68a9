/**
 * The worker thread of an engine row (engine-row.ts E1-E4): one EngineRow, driven by the
 * matrix's requests one at a time. Started by engine-row.ts from the build only (`new
 * Worker(new URL('./engine-row-worker.js', import.meta.url))`), as the I/O candidates' worker is.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EngineRow, errorImage, type EngineRowAnswer, type EngineRowRequest, type EngineRowWorkerData } from './engine-row.js';

const port = parentPort!;
const data = workerData as EngineRowWorkerData;
const abort = new Int32Array(data.abort);
let row: EngineRow | null = null;

const send = (m: EngineRowAnswer): void => port.postMessage(m);

async function serve(req: EngineRowRequest): Promise<unknown> {
  switch (req.op) {
    case 'open':
      row = await EngineRow.open(data.options, {
        ...(data.log ? { onLog: (line: string) => send({ log: line }) } : {}),
        // E3: the main thread raised the flag; the message is never shown (its own stop error is).
        checkAbort: () => {
          if (Atomics.load(abort, 0) !== 0) throw new Error(`${data.options.kind} row: stopped`);
        },
      });
      return null;
    case 'round':
      return row!.round(req.R, req.P, req.gen);
    case 'blocks':
      return row!.blocks(req.R, req.P);
    case 'close': {
      const r = row;
      row = null;
      await r?.close(req.discard);
      return null;
    }
  }
}

port.on('message', (req: EngineRowRequest) => {
  serve(req).then(
    (value) => send({ id: req.id, value }),
    (err: unknown) => send({ id: req.id, error: errorImage(err) }),
  );
});
