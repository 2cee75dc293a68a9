/**
 * `lamstore check <volume> [--pages] [--json]`: verify a volume, never repair it.
 *
 * Invariants:
 *  K1 Exit 0 = no finding at all; 1 = the volume was read and has findings (errors or
 *     warnings), each printed on its own stdout line naming the damaged part; 2 = it could not
 *     be checked (bad usage, missing file, not a regular file, locked, I/O error).
 *  K2 Read-only under a shared flock (checkVolume); the file's bytes never change.
 *  K3 --pages verifies every page below nblocks of every fork against its checksum, with a
 *     progress bar when stdout is a terminal (not with --json).
 */
import type { Command } from 'commander';
import { checkVolume } from '../volume/index.js';
import type { Finding } from '../volume/index.js';
import { EXIT_VOLUME, FindingsFailure, withFile } from '../cmdline/failure.js';
import { startProgress } from './progress.js';
import type { Progress } from './progress.js';

export interface CheckOptions {
  pages?: boolean;
  json?: boolean;
}

export async function runCheck(file: string, options: CheckOptions): Promise<void> {
  let findings: Finding[];
  let pagesVerified = 0;
  if (options.pages) {
    let progress: Progress | undefined;
    try {
      findings = await checkVolume(file, {
        checkPages: true,
        onProgress: ({ doneBlocks, totalBlocks }) => {
          progress ??= startProgress({ stream: process.stdout, label: 'checking pages', unit: 'pages', total: totalBlocks, enabled: options.json !== true });
          progress.update(doneBlocks);
          pagesVerified = doneBlocks;
        },
      });
    } finally {
      progress?.stop();
    }
  } else {
    findings = await checkVolume(file);
  }
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  if (options.json) {
    const doc = { volume: file, clean: findings.length === 0, pagesChecked: options.pages === true, pagesVerified, errors, warnings, findings };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else {
    const lines = findings.map((f) => `${file}: ${f.severity}: ${f.part}: ${f.message.replace(/\s*\n\s*/g, ' ')}`);
    const scope = options.pages ? `metadata and ${pagesVerified} pages` : 'metadata';
    lines.push(findings.length === 0 ? `${file}: clean (${scope} checked)` : `${file}: ${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'} (${scope} checked)`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (findings.length > 0) throw new FindingsFailure(EXIT_VOLUME, 'FINDINGS', file, `${findings.length} finding${findings.length === 1 ? '' : 's'}`);
}

export function addCheckCommand(program: Command): Command {
  return program
    .command('check')
    .description('verify a volume: both superblocks, the catalog, extent placement; --pages also every page checksum')
    .argument('<volume>', 'the volume file')
    .option('-p, --pages', 'verify the checksum of every allocated page too (reads the used part of the volume)')
    .option('--json', 'print one JSON document { volume, clean, findings: [{ severity, part, message }] }')
    .addHelpText(
      'after',
      `
Example:
  $ lamstore check data.lam
  $ lamstore check data.lam --pages --json

Exit status: 0 clean; 1 findings (each printed as "<file>: <severity>: <part>: <problem>");
2 could not check (bad usage, missing file, not a file, locked, I/O error).`,
    )
    .action(async (file: string, options: CheckOptions) => {
      await withFile(file, 'check', () => runCheck(file, options));
    });
}
