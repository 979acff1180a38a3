// Putting a submission out: check it (structure, size, compile), upload it to
// the miner's store, and commit it on chain. Every check that can fail runs
// before anything is written: a file that does not compile, a missing setting,
// an unregistered hotkey, the rate limit or a still-pending commitment stop the
// command with nothing uploaded and nothing sent.
import * as path from 'path';
import { UserError } from '../errors';
import { encodePayload, MAX_PAYLOAD_BYTES, CommitmentPayload } from '../chain/payload';
import type { CommitReceipt, MinerChain, PendingStatus } from '../chain/types';
import { codeKey, uploadCode, UploadResult } from '../storage/store';
import { readCheckedSource, SourceFile } from '../submission/source';
import type { CompileResult } from '../harness/compile';
import { defaultWorkDir } from '../util/paths';
import type { Hotkey } from '../wallet/wallet';
import { MinerContext, withChain } from './context';
import { storageFor, StorageTarget } from './storage';

/** Progress for the text output: one line per finished step. */
export type OnStep = (line: string) => void;

/**
 * Compiles the source as a validator would (the harness, in the sandbox, with
 * the precompiled header), through the compile cache local-bench uses by
 * default: a file already compiled there is not compiled again. Throws a
 * UserError when the compile cannot run at all (the engine not built, no
 * bubblewrap).
 */
export async function compileAsValidator(source: SourceFile): Promise<CompileResult> {
  // The harness loads only when a compile is asked for.
  const { compileCacheDir, compileCached } = await import('../harness/compile');
  return compileCached(source, { cacheDir: compileCacheDir(path.join(defaultWorkDir(), 'plugins')) });
}

/**
 * The compile check of upload, commit and submit: the compiler's errors, or the
 * reason it cannot run (which --no-compile skips), as a UserError.
 */
export async function checkCompiles(source: SourceFile): Promise<{ seconds: number; cached: boolean }> {
  let r: CompileResult;
  try {
    r = await compileAsValidator(source);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    throw new UserError(`cannot check that ${source.path} compiles: ${e.message}`, {
      hint: `${e.hint ? `${e.hint}; ` : ''}or pass --no-compile to skip this check (a file that does not compile still uses up the commitment)`,
    });
  }
  if (!r.ok) throw new UserError(r.message, { hint: 'nothing was uploaded or committed; `tournament miner test` shows every check' });
  return { seconds: r.seconds, cached: r.cached === true };
}

function compileTime(c: { seconds: number; cached: boolean }): string {
  return c.cached ? 'compiled before: reused from the cache' : `${c.seconds.toFixed(1)} s`;
}

export interface PreparedCommit {
  key: string;
  payload: CommitmentPayload;
  plaintext: Uint8Array;
}

/** The commitment for `source` in `target`; checks, without any network, that it fits the chain's limit. */
export function prepareCommit(target: StorageTarget, source: SourceFile): PreparedCommit {
  const key = codeKey(source.sha256);
  const payload: CommitmentPayload = { v: 1, sha256: source.sha256, size: source.bytes.length, loc: target.location(key) };
  const plaintext = encodePayload(payload);
  if (plaintext.length > MAX_PAYLOAD_BYTES) {
    throw new UserError(`the commitment would be ${plaintext.length} bytes; the chain's limit leaves room for ${MAX_PAYLOAD_BYTES}`, {
      hint: 'shorten the bucket name, public URL or read-token values',
    });
  }
  return { key, payload, plaintext };
}

/** Checks that the code is in the store already (commit without upload). */
async function checkUploaded(target: StorageTarget, source: SourceFile, key: string): Promise<void> {
  const info = await target.store.head(key);
  if (!info || info.size !== source.bytes.length) {
    throw new UserError(`${source.path} (sha256 ${source.sha256.slice(0, 12)}…) is not uploaded to ${target.store.description}`, {
      hint: 'run `tournament miner upload` first, or use `tournament miner submit`',
    });
  }
}

/**
 * What the chain must allow before anything is sent: the hotkey registered, the
 * rate limit passed, and no timelocked commitment still pending, since
 * Commitments.set_commitment replaces a pending one and it would never be revealed.
 */
export async function checkChainAllows(ctx: MinerContext, chain: MinerChain, address: string, replacePending: boolean): Promise<{ uid: number; replaced: PendingStatus[] }> {
  const st = await chain.status(ctx.netuid, address);
  if (st.uid === null) {
    throw new UserError(`hotkey ${address} is not registered on subnet ${ctx.netuid} of ${chain.name}`, {
      hint: `register it first: btcli subnet register --netuid ${ctx.netuid}`,
    });
  }
  const gap = ctx.hp.min_blocks_between_commits;
  const cur = st.currentBlock;
  const last = st.lastCommitBlock;
  if (last !== null && cur - last < gap) {
    const wait = gap - (cur - last);
    throw new UserError(
      `rate limit: the last commitment was at block ${last}, now ${cur}; the next is allowed at block ${last + gap} (in ${wait} blocks, about ${Math.ceil((wait * chain.blockTime) / 60)} min)`,
    );
  }
  if (st.pending.length && !replacePending) {
    const p = st.pending[st.pending.length - 1];
    throw new UserError(
      `the commitment made at block ${p.block} is still pending (it reveals at block ~${p.revealBlock}, now ${cur}); a new commitment would replace it on chain and it would never be revealed`,
      { hint: 'wait until `tournament miner status` shows it revealed, or pass --replace-pending to replace it' },
    );
  }
  return { uid: st.uid, replaced: st.pending };
}

export interface CommitOutcome {
  payload: CommitmentPayload;
  receipt: CommitReceipt;
  uid: number;
  /** pending commitments this one replaced (only with replacePending) */
  replaced: PendingStatus[];
}

/**
 * Checks that the chain allows the commitment, runs `beforeSend` (the upload,
 * for submit: only once nothing can refuse any more), then sends it.
 */
export async function sendCommit(
  ctx: MinerContext,
  chain: MinerChain,
  hotkey: Hotkey,
  prepared: PreparedCommit,
  o: { replacePending?: boolean; beforeSend?: () => Promise<void> } = {},
): Promise<CommitOutcome> {
  const { uid, replaced } = await checkChainAllows(ctx, chain, hotkey.address, o.replacePending ?? false);
  await o.beforeSend?.();
  const receipt = await chain.submitCommitment({ netuid: ctx.netuid, hotkey, plaintext: prepared.plaintext, revealBlocks: ctx.hp.reveal_blocks });
  return { payload: prepared.payload, receipt, uid, replaced };
}

export interface PublishOptions {
  ctx: MinerContext;
  file: string;
  hotkey: Hotkey;
  /** upload first (submit) or expect the code in the store already (commit) */
  upload: boolean;
  compile: boolean;
  replacePending: boolean;
  onStep?: OnStep;
}

export interface PublishOutcome extends CommitOutcome {
  source: SourceFile;
  upload?: UploadResult;
  compileSeconds?: number;
}

/** commit, or with `upload` submit: every check, then the upload, then the commitment. */
export async function publish(o: PublishOptions): Promise<PublishOutcome> {
  const step = o.onStep ?? (() => undefined);
  const source = readCheckedSource(o.file, o.ctx.hp.max_code_bytes);
  const target = await storageFor(o.ctx.network);
  try {
    const prepared = prepareCommit(target, source);
    const compiled = o.compile ? await checkCompiles(source) : undefined;
    if (compiled) step(`compiles: ${source.path} (${compileTime(compiled)})`);
    if (!o.upload) await checkUploaded(target, source, prepared.key);
    let up: UploadResult | undefined;
    const upload = async () => {
      up = await uploadCode(target.store, source.bytes);
      step(`${up.uploaded ? 'uploaded' : 'already uploaded'}: ${up.key} to ${target.store.description}`);
    };
    try {
      const c = await withChain(o.ctx, (chain) => sendCommit(o.ctx, chain, o.hotkey, prepared, { replacePending: o.replacePending, beforeSend: o.upload ? upload : undefined }));
      return { ...c, source, upload: up, compileSeconds: compiled?.seconds };
    } catch (e) {
      if (up && e instanceof UserError) {
        const hint = `the code is uploaded (${up.key}); once fixed, run \`tournament miner commit\` to commit it${e.hint ? `; ${e.hint}` : ''}`;
        throw new UserError(e.message, { hint, exitCode: e.exitCode });
      }
      throw e;
    }
  } finally {
    target.close();
  }
}

/** miner upload: check (compile included), then put the code in the store. */
export async function uploadOnly(o: { ctx: MinerContext; file: string; compile: boolean; onStep?: OnStep }): Promise<{ source: SourceFile; store: string; result: UploadResult }> {
  const source = readCheckedSource(o.file, o.ctx.hp.max_code_bytes);
  const target = await storageFor(o.ctx.network);
  try {
    if (o.compile) {
      const c = await checkCompiles(source);
      o.onStep?.(`compiles: ${source.path} (${compileTime(c)})`);
    }
    return { source, store: target.store.description, result: await uploadCode(target.store, source.bytes) };
  } finally {
    target.close();
  }
}
