// tournament miner test [file]: the checks a validator makes before running code.
import type { Argv, CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { loadHparams } from '../../config/hparams';
import { ArgsOf, withHparams, withJson } from '../options';
import { compileAsValidator } from '../../miner/publish';
import { checkSource, BASELINE, SourceCheck } from '../../submission/source';
import { report } from './print';

const builder = (y: Argv) =>
  withJson(withHparams(y))
    .positional('file', { type: 'string', default: BASELINE, defaultDescription: 'local_test/train.cpp in the installation', describe: 'The C++ source to check' })
    .option('compile', { type: 'boolean', default: true, describe: 'Also compile it with the harness (--no-compile to skip)' })
    .epilog(
      'Checks, in order: the file exists; its size is within max_code_bytes (hparams); it is UTF-8 text; it includes ' +
        '<tournament/train_api.h>; it defines inner_steps; and it compiles as a plugin with the flags a validator uses ' +
        '(needs the engine built; otherwise this check is reported as skipped, with the reason). Exit status is non-zero ' +
        'when any check fails.',
    );

type Args = ArgsOf<typeof builder>;

export const minerTestCommand: CommandModule<{}, Args> = {
  command: 'test [file]',
  describe: 'Check a submission: structure, size, and that it compiles against the contract',
  builder,
  handler: async (argv) => {
    const hp = loadHparams(argv.hparams);
    const { checks, source } = checkSource(argv.file, hp.max_code_bytes);
    let compile: { status: 'passed' | 'failed' | 'skipped'; detail: string } | undefined;
    if (checks.every((c) => c.ok) && source) {
      if (!argv.compile) {
        compile = { status: 'skipped', detail: 'skipped: --no-compile' };
      } else {
        try {
          const r = await compileAsValidator(source);
          compile = r.ok ? { status: 'passed', detail: 'compiles against the contract' } : { status: 'failed', detail: r.message };
        } catch (e) {
          if (e instanceof UserError) compile = { status: 'skipped', detail: `skipped: ${e.message}` };
          else throw e;
        }
      }
    }
    const all: SourceCheck[] = compile ? [...checks, { name: 'compiles', ok: compile.status !== 'failed', detail: compile.detail }] : checks;
    const passed = all.every((c) => c.ok);
    report(
      argv.json,
      { file: argv.file, passed, sha256: source?.sha256, checks: all, compile: compile?.status ?? 'not run' },
      [
        ...all.map((c) => `${c.ok ? (c.name === 'compiles' && compile?.status === 'skipped' ? 'SKIP' : ' ok ') : 'FAIL'}  ${c.name}: ${c.detail}`),
        passed
          ? `${argv.file}: ${compile?.status === 'skipped' ? 'structure checks pass; the compile check was skipped' : 'all checks pass'}${source ? ` (sha256 ${source.sha256})` : ''}`
          : `${argv.file}: not a valid submission`,
      ],
    );
    if (!passed) process.exitCode = 1;
  },
};
