// tournament miner upload [file]: puts the code in the miner's bucket under its content address.
import type { Argv, CommandModule } from 'yargs';
import { ArgsOf, withCompile, withHparams, withJson, withNetwork } from '../options';
import { minerContext } from '../../miner/context';
import { uploadOnly } from '../../miner/publish';
import { BASELINE } from '../../submission/source';
import { report, STORAGE_HELP } from './print';

const builder = (y: Argv) =>
  withCompile(withNetwork(withJson(withHparams(y))))
    .positional('file', { type: 'string', default: BASELINE, defaultDescription: 'local_test/train.cpp in the installation', describe: 'The C++ source to upload' })
    .epilog(
      'The file is checked as `miner test` checks it (compile included) before anything is uploaded. The object key is ' +
        `tournament/train/<sha256>.cpp; uploading the same code twice is a no-op. ${STORAGE_HELP}`,
    );

type Args = ArgsOf<typeof builder>;

export const minerUploadCommand: CommandModule<{}, Args> = {
  command: 'upload [file]',
  describe: 'Check the code and upload it to your bucket (content-addressed by its sha256)',
  builder,
  handler: async (argv) => {
    const ctx = minerContext(argv);
    const { source, store, result } = await uploadOnly({
      ctx,
      file: argv.file,
      compile: argv.compile,
      onStep: argv.json ? undefined : (line) => process.stdout.write(line + '\n'),
    });
    report(argv.json, { file: source.path, sha256: result.sha256, size: result.size, key: result.key, uploaded: result.uploaded, store }, [
      `${result.uploaded ? 'uploaded' : 'already there'}: ${source.path} -> ${store}`,
      `  key     ${result.key}`,
      `  sha256  ${result.sha256}`,
      `  size    ${result.size} bytes`,
      `next: tournament miner commit ${source.path}${argv.network !== 'finney' ? ` --network ${argv.network}` : ''}`,
    ]);
  },
};
