// What the miner subcommands share: reading their flags, checking the source
// file, choosing the object store for the network, and the commit step.
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../../errors';
import { loadHparams, Hparams } from '../../config/hparams';
import { resolveNetwork, openChain, NetworkSpec, LOCAL_STORAGE_DIR } from '../../chain/network';
import type { MinerChain, CommitReceipt } from '../../chain/types';
import { encodePayload, MAX_PAYLOAD_BYTES, CommitmentPayload, CodeLocation } from '../../chain/payload';
import type { Hotkey } from '../../wallet/wallet';
import { LocalStore, ObjectStore, ObjectInfo, codeKey, sha256Hex } from '../../storage/store';
// The wallet (@polkadot/keyring), R2 (@aws-sdk) and chain modules load only when a
// command needs them: every CLI start would otherwise pay for them.

export const DEFAULT_SOURCE = 'local_test/train.cpp';

export interface CommonArgs {
  hparams: string;
  json?: boolean;
  network: string;
  netuid?: number;
  'wallet.name'?: string;
  'wallet.hotkey'?: string;
  'wallet.path'?: string;
}

export interface Context {
  hp: Hparams;
  network: NetworkSpec;
  netuid: number;
}

export function context(argv: CommonArgs): Context {
  const hp = loadHparams(argv.hparams);
  const network = resolveNetwork(argv.network);
  const netuid = argv.netuid ?? hp.netuid;
  if (!Number.isInteger(netuid) || netuid < 0 || netuid > 65535) throw new UserError(`--netuid must be an integer in [0, 65535], got ${argv.netuid}`);
  return { hp, network, netuid };
}

function walletSpec(argv: CommonArgs) {
  return { name: argv['wallet.name'] ?? 'default', hotkey: argv['wallet.hotkey'] ?? 'default', path: argv['wallet.path'] };
}

export async function hotkeyFor(argv: CommonArgs): Promise<Hotkey> {
  const { loadHotkey } = await import('../../wallet/wallet');
  return loadHotkey(walletSpec(argv));
}

/** Prints either the JSON document or the text lines. */
export function report(json: boolean | undefined, doc: unknown, lines: string[]): void {
  if (json) process.stdout.write(JSON.stringify(doc, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
  else process.stdout.write(lines.join('\n') + '\n');
}

// ---- the submission file -------------------------------------------------

export interface SourceFile {
  path: string;
  bytes: Uint8Array;
  text: string;
  sha256: string;
}

/** Blanks // and /* *\/ comments (and, unless kept, string/char literals), keeping line structure. */
function stripCommentsAndStrings(src: string, keepStrings = false): string {
  return src.replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'/g, (m) => {
    if (m.startsWith('"') || m.startsWith("'")) return keepStrings ? m : '""';
    return m.replace(/[^\n]/g, ' ');
  });
}

/** True when the code defines (not just declares or calls) a function named inner_steps. */
function definesInnerSteps(src: string): boolean {
  const code = stripCommentsAndStrings(src);
  const re = /\binner_steps\s*\(/g;
  for (let m = re.exec(code); m; m = re.exec(code)) {
    let depth = 1;
    let i = m.index + m[0].length;
    for (; i < code.length && depth > 0; i++) {
      if (code[i] === '(') depth++;
      else if (code[i] === ')') depth--;
    }
    const after = code.slice(i).trimStart();
    if (/^(noexcept\s*)?(->\s*[\w:<>,\s]+)?\{/.test(after)) return true;
  }
  return false;
}

const INCLUDE_RE = /^[ \t]*#[ \t]*include[ \t]*[<"]tournament\/train_api\.h[>"]/m;

export interface SourceCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** The structure and size checks; `fatal` says whether a failure stops here (file unreadable). */
export function checkSource(file: string, maxBytes: number): { checks: SourceCheck[]; source?: SourceFile } {
  const checks: SourceCheck[] = [];
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    checks.push({ name: 'exists', ok: false, detail: `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as NodeJS.ErrnoException).code}` });
    return { checks };
  }
  if (!st.isFile()) {
    checks.push({ name: 'exists', ok: false, detail: `${file} is not a regular file` });
    return { checks };
  }
  checks.push({ name: 'exists', ok: true, detail: file });
  const sizeOk = st.size > 0 && st.size <= maxBytes;
  checks.push({ name: 'size', ok: sizeOk, detail: `${st.size} bytes (limit ${maxBytes})${st.size === 0 ? ': empty' : ''}` });
  if (!sizeOk) return { checks };
  const bytes = fs.readFileSync(file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    if (text.includes('\0')) throw new Error('NUL byte');
  } catch {
    checks.push({ name: 'utf-8 text', ok: false, detail: 'not UTF-8 text' });
    return { checks };
  }
  checks.push({ name: 'utf-8 text', ok: true, detail: 'ok' });
  const inc = INCLUDE_RE.test(stripCommentsAndStrings(text, true));
  checks.push({ name: 'includes tournament/train_api.h', ok: inc, detail: inc ? 'ok' : 'add `#include <tournament/train_api.h>`' });
  const def = definesInnerSteps(text);
  checks.push({ name: 'defines inner_steps', ok: def, detail: def ? 'ok' : 'no definition of inner_steps(...) { ... } found' });
  return { checks, source: { path: file, bytes, text, sha256: sha256Hex(bytes) } };
}

/** Reads the file and insists every structure check passes (for upload/commit/submit). */
export function readCheckedSource(file: string, maxBytes: number): SourceFile {
  const { checks, source } = checkSource(file, maxBytes);
  const bad = checks.filter((c) => !c.ok);
  if (bad.length || !source) {
    throw new UserError(`${file} is not a valid submission: ${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}`, {
      hint: 'run `tournament miner test` on it for the full report',
    });
  }
  return source;
}

// ---- storage -------------------------------------------------------------

export interface StorageTarget {
  store: ObjectStore;
  /** where validators fetch a key from, as committed */
  location(key: string): CodeLocation;
  close(): void;
}

/** The local folder on --network local, the miner's R2 bucket otherwise. */
export async function storageFor(network: NetworkSpec): Promise<StorageTarget> {
  if (network.kind === 'local') {
    const store = new LocalStore(path.join(process.cwd(), LOCAL_STORAGE_DIR));
    return { store, location: (key) => ({ kind: 'local', key }), close: () => undefined };
  }
  const { loadEnv, r2ConfigFromEnv, r2Location, R2Store } = await import('../../storage/r2');
  const cfg = r2ConfigFromEnv(loadEnv());
  const store = R2Store.forUpload(cfg);
  return { store, location: (key) => r2Location(cfg, key), close: () => store.destroy() };
}

// ---- commit --------------------------------------------------------------

export interface CommitOutcome {
  payload: CommitmentPayload;
  receipt: CommitReceipt;
  uid: number;
}

export interface PreparedCommit {
  payload: CommitmentPayload;
  plaintext: Uint8Array;
}

/**
 * Builds the payload for code already in the store, checking before any network
 * is contacted that the object is there with the right size and that the
 * payload fits the chain's limit. `known`: the object as an upload just left it
 * (the store is not asked again).
 */
export async function prepareCommit(target: StorageTarget, source: SourceFile, known?: ObjectInfo): Promise<PreparedCommit> {
  const key = codeKey(source.sha256);
  const info = known ?? (await target.store.head(key));
  if (!info || info.size !== source.bytes.length) {
    throw new UserError(`${source.path} (sha256 ${source.sha256.slice(0, 12)}…) is not uploaded to ${target.store.description}`, {
      hint: 'run `tournament miner upload` first, or use `tournament miner submit`',
    });
  }
  const payload: CommitmentPayload = { v: 1, sha256: source.sha256, size: source.bytes.length, loc: target.location(key) };
  const plaintext = encodePayload(payload);
  if (plaintext.length > MAX_PAYLOAD_BYTES) {
    throw new UserError(`the commitment would be ${plaintext.length} bytes; the chain's limit leaves room for ${MAX_PAYLOAD_BYTES}`, {
      hint: 'shorten the bucket name, public URL or read-token values',
    });
  }
  return { payload, plaintext };
}

/** Sends a prepared commitment once the hotkey is registered and the rate limit allows it. */
export async function sendCommit(ctx: Context, chain: MinerChain, hotkey: Hotkey, prepared: PreparedCommit): Promise<CommitOutcome> {
  const [uid, cur, last] = await Promise.all([
    chain.uidOf(ctx.netuid, hotkey.address),
    chain.currentBlock(),
    chain.lastCommitBlock(ctx.netuid, hotkey.address),
  ]);
  if (uid === null) {
    throw new UserError(`hotkey ${hotkey.address} is not registered on subnet ${ctx.netuid} of ${chain.name}`, {
      hint: `register it first: btcli subnet register --netuid ${ctx.netuid}`,
    });
  }
  const gap = ctx.hp.min_blocks_between_commits;
  if (last !== null && cur - last < gap) {
    const wait = gap - (cur - last);
    throw new UserError(
      `rate limit: the last commitment was at block ${last}, now ${cur}; the next is allowed at block ${last + gap} (in ${wait} blocks, about ${Math.ceil((wait * chain.blockTime) / 60)} min)`,
    );
  }
  const receipt = await chain.submitCommitment({
    netuid: ctx.netuid,
    hotkey,
    plaintext: prepared.plaintext,
    revealBlocks: ctx.hp.reveal_blocks,
  });
  return { payload: prepared.payload, receipt, uid };
}

export function describeLocation(loc: CodeLocation): string {
  switch (loc.kind) {
    case 'local':
      return `${LOCAL_STORAGE_DIR}/${loc.key}`;
    case 'url':
      return loc.url;
    case 'r2':
      return `r2://${loc.bucket}/${loc.key} (account ${loc.account_id}, read-only token)`;
  }
}

/** Opens the network, runs `fn`, and always closes it. */
export async function withChain<T>(ctx: Context, fn: (chain: MinerChain) => Promise<T>): Promise<T> {
  const chain = await openChain(ctx.network, ctx.hp.block_time);
  try {
    return await fn(chain);
  } finally {
    await chain.close();
  }
}
