/**
 * A vitest reporter that gathers the campaign suites' figure lines (the one summary line each
 * prints, reliability-anchors.md section 8: `crash-matrix: ...`, `kill-loop: ...`, ...) from
 * their console output and prints them together once the run ends, with the date, the duration
 * and the command, ready to be quoted (the root README's "Campaign figures"). The default
 * reporter still prints each line where its test ran; this block gathers them, so a long soak's
 * figures are not scattered through its output. Prints nothing when no suite printed a figure.
 *
 * A figure line starts with a suite's name and ": " (the writers' crash matrix adds its variant
 * in parentheses); the model suites' "seed=" lines count too, since they say how to replay the
 * run. Detail lines ("crash-matrix detail: ...", "model-pbt slru: ...") stay where they are.
 */
import type { Reporter, TestModule, TestRunEndReason, Vitest } from 'vitest/node';

/** The suites in the order the block lists them. */
const SUITES = ['crash-matrix', 'crash-matrix-writers', 'kill-loop', 'fault-loop', 'bad-input', 'model-pbt', 'volume-model', 'aging'] as const;
const FIGURE = /^(crash-matrix-writers) \([^)]*\): |^(crash-matrix|kill-loop|fault-loop|bad-input|model-pbt|volume-model|aging): /;

export class FiguresReporter implements Reporter {
  #lines: { suite: number; seq: number; text: string }[] = [];
  #startMs = Date.now();
  #started = new Date();

  onInit(_vitest: Vitest): void {
    this.#startMs = Date.now();
    this.#started = new Date();
  }

  onUserConsoleLog(log: { content: string; type: 'stdout' | 'stderr' }): void {
    if (log.type !== 'stdout') return;
    for (const text of log.content.split('\n')) {
      const m = FIGURE.exec(text);
      if (m) this.#lines.push({ suite: SUITES.indexOf((m[1] ?? m[2]) as (typeof SUITES)[number]), seq: this.#lines.length, text });
    }
  }

  onTestRunEnd(_modules: ReadonlyArray<TestModule>, _errors: ReadonlyArray<unknown>, reason: TestRunEndReason): void {
    if (this.#lines.length === 0) return;
    const minutes = (Date.now() - this.#startMs) / 60_000;
    const event = process.env.npm_lifecycle_event;
    // The shell expanded test/campaign-*.test.ts: say it as it was typed.
    const args = process.argv.slice(2);
    const campaign = args.filter((a) => /(^|\/)test\/campaign-[^/]*\.test\.ts$/.test(a));
    const shown = campaign.length > 1 ? [...args.filter((a) => !campaign.includes(a)), 'test/campaign-*.test.ts'] : args;
    const command = event && event !== 'npx' ? `npm run ${event}` : `npx vitest ${shown.join(' ')}`;
    const soak = process.env.LAMSTORE_SOAK === '1' ? ', LAMSTORE_SOAK=1' : '';
    const lines = [...this.#lines].sort((a, b) => a.suite - b.suite || a.seq - b.seq).map((l) => l.text);
    process.stdout.write(`\nCampaign figures (${this.#started.toISOString()}, ${minutes.toFixed(1)} min, \`${command}\`${soak}, ${reason}):\n${lines.join('\n')}\n`);
  }
}
