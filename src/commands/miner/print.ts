// The miner commands' output: a JSON document with --json, text lines otherwise.
import type { SigningHotkey, WalletChoice } from '../../miner/context';

/** Prints either the JSON document or the text lines. */
export function report(json: boolean | undefined, doc: unknown, lines: string[]): void {
  if (json) process.stdout.write(JSON.stringify(doc, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
  else process.stdout.write(lines.join('\n') + '\n');
}

/** The wallet flags as the user gave them. */
export function walletChoice(argv: { 'wallet.name'?: string; 'wallet.hotkey'?: string; 'wallet.path'?: string }): WalletChoice {
  return { name: argv['wallet.name'], hotkey: argv['wallet.hotkey'], path: argv['wallet.path'] };
}

/** Says so when the local development hotkey signed, and where it lives. */
export function hotkeyNote(hotkey: SigningHotkey): string[] {
  return hotkey.dev ? [`(no wallet given and none at the default place: signed with the local network's development hotkey, ${hotkey.file})`] : [];
}

export const STORAGE_HELP =
  'Storage: on --network local the code goes to .local_storage/ in this folder. Otherwise to your Cloudflare R2 bucket, ' +
  'configured in the environment or a .env file in this folder: TOURNAMENT_R2_ACCOUNT_ID, TOURNAMENT_R2_BUCKET_NAME, ' +
  'TOURNAMENT_R2_ACCESS_KEY_ID, TOURNAMENT_R2_SECRET_ACCESS_KEY (a write token, never published), TOURNAMENT_R2_JURISDICTION ' +
  '(eu, fedramp or us, for a bucket created in that jurisdiction), and for validators either TOURNAMENT_R2_PUBLIC_URL ' +
  "(the bucket's public URL) or TOURNAMENT_R2_READ_ACCESS_KEY_ID + TOURNAMENT_R2_READ_SECRET_ACCESS_KEY (a read-only " +
  'token, which the commitment publishes: scope it to this one bucket). TOURNAMENT_R2_ENDPOINT points at another ' +
  'S3-compatible endpoint.';

export const WALLET_HELP =
  'Wallets: the hotkey file btcli writes (WALLETS/NAME/hotkeys/HOTKEY, unencrypted, from a mnemonic, a seed or a URI such ' +
  "as //Alice) signs. On --network local without wallet flags and without a default wallet, a development hotkey is " +
  'generated under .local_commitments/ and used (the output says so).';
