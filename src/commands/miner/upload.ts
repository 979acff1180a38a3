// tournament miner upload [file]: puts the code in the miner's bucket under its content address.
import type { Argv, CommandModule } from 'yargs';
import { withHparams, withJson, withNetwork } from '../options';
import { uploadCode } from '../../storage/store';
import { context, readCheckedSource, storageFor, report, DEFAULT_SOURCE, CommonArgs } from './common';

interface Args extends CommonArgs {
  file: string;
}

export const STORAGE_HELP =
  'Storage: on --network local the code goes to .local_storage/. Otherwise to your Cloudflare R2 bucket, configured in the ' +
  'environment or a .env file here: TOURNAMENT_R2_ACCOUNT_ID, TOURNAMENT_R2_BUCKET_NAME, TOURNAMENT_R2_ACCESS_KEY_ID, ' +
  'TOURNAMENT_R2_SECRET_ACCESS_KEY (a write token, never published), and for validators either TOURNAMENT_R2_PUBLIC_URL ' +
  '(the bucket\'s public URL) or TOURNAMENT_R2_READ_ACCESS_KEY_ID + TOURNAMENT_R2_READ_SECRET_ACCESS_KEY (a read-only ' +
  'token, which the commitment reveals). TOURNAMENT_R2_ENDPOINT points at another S3-compatible endpoint.';

async function runUpload(argv: Args) {
  const ctx = context(argv);
  const source = readCheckedSource(argv.file, ctx.hp.max_code_bytes);
  const target = await storageFor(ctx.network);
  try {
    const r = await uploadCode(target.store, source.bytes);
    return { source, target, result: r };
  } finally {
    target.close();
  }
}

export const minerUploadCommand: CommandModule<{}, Args> = {
  command: 'upload [file]',
  describe: 'Upload the code to your bucket (content-addressed by its sha256)',
  builder: (y: Argv<{}>) =>
    withNetwork(withJson(withHparams(y)))
      .positional('file', { type: 'string', default: DEFAULT_SOURCE, describe: 'The C++ source to upload' })
      .epilog(`The object key is tournament/train/<sha256>.cpp; uploading the same code twice is a no-op. ${STORAGE_HELP}`) as unknown as Argv<Args>,
  handler: async (argv) => {
    const { source, target, result } = await runUpload(argv);
    report(argv.json, { file: source.path, sha256: result.sha256, size: result.size, key: result.key, uploaded: result.uploaded, store: target.store.description }, [
      `${result.uploaded ? 'uploaded' : 'already there'}: ${source.path} -> ${target.store.description}`,
      `  key     ${result.key}`,
      `  sha256  ${result.sha256}`,
      `  size    ${result.size} bytes`,
      `next: tournament miner commit ${source.path}${argv.network !== 'finney' ? ` --network ${argv.network}` : ''}`,
    ]);
  },
};
