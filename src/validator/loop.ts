// The validator's loop. One pass:
//   1. read the current block, the registered hotkeys and their revealed
//      commitments; record every new one (checked on sight: malformed or
//      too soon after the hotkey's previous one is rejected with its reason);
//   2. evaluate every pending submission, oldest commitment first: fetch,
//      check, run through the trusted harness, record the verdict and the new
//      leader in one transaction. With several evaluation slots (one per GPU,
//      or per gpus_per_evaluation GPUs) as many submissions are evaluated at
//      once, each on its own slot's devices;
//   3. set weights when set_weights_interval_blocks have passed since the
//      last ones.
// Whenever an evaluation ends it looks for new commitments and due weights
// again, so a long queue delays neither.
// Every step is recorded before it is acted on (store.ts), so a killed
// validator resumes where it stopped. Chain and storage failures are logged
// and retried with backoff; a submission's own failures cost only its own time.
import * as fs from 'fs';
import * as path from 'path';
import { u8aToHex, hexToU8a } from '@polkadot/util';
import type { Hparams } from '../config/hparams';
import type { Verdict } from '../harness/types';
import type { Neuron, ValidatorChain } from '../chain/validator-chain';
import { redactPayload } from '../chain/payload';
import { MAX_TIMELOCK_COMMITMENT_BYTES } from '../chain/limits';
import { sha256Hex } from '../storage/store';
import type { Hotkey } from '../wallet/wallet';
import { writeAtomic } from '../util/atomic';
import { checkCommitment } from './commitments';
import { fetchCommittedCode, FetchError, type FetchOptions } from './fetch';
import type { Logger, SubmissionRef } from './log';
import { currentLeader, leadershipHistory, type Scored } from './scoring';
import type { NewSubmission, SubmissionRow, ValidatorStore } from './store';
import { planWeights } from './weights';

/**
 * Evaluates the C++ file at `file` (the trusted harness, or a stand-in in tests) on `slot`: the devices of one
 * evaluation slot, one per rank (empty: the harness's default device).
 */
export type EvaluateFn = (file: string, onProgress: (text: string) => void, slot: string[]) => Promise<Verdict>;
export type FetchFn = (p: Parameters<typeof fetchCommittedCode>[0], o: FetchOptions) => Promise<Buffer>;

export interface ValidatorOptions {
  netuid: number;
  hparams: Hparams;
  dataDir: string;
  /** the local network: local storage, private addresses, weights recorded only */
  local: boolean;
  /** the validator's hotkey: signs weights (null on the local network) */
  hotkey: Hotkey | null;
  /** evaluation attempts (interrupted or failed inside the harness) before a submission is rejected */
  maxAttempts?: number;
  /** fetch failures (each after a few quick retries) before a submission is rejected */
  maxFetchFailures?: number;
  /** seconds between passes when idle */
  pollSeconds?: number;
  /** ignore commitments revealed before this block */
  sinceBlock?: number;
  fetch?: FetchFn;
  fetchTimeoutMs?: number;
  /**
   * Evaluation slots: each is the devices of one evaluation (src/harness/devices.ts), and as many submissions
   * are evaluated at once as there are slots. Default: one slot on the harness's default device.
   */
  slots?: string[][];
  /** first wait after a failed pass (doubles up to 5 min) */
  outageBackoffMs?: number;
  r2Endpoint?: string;
}

export interface PassSummary {
  block: number;
  discovered: number;
  evaluated: number;
  accepted: number;
  rejected: number;
  weightsSet: boolean;
  pending: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Exponential backoff: base * 2^n, capped. */
export function backoffMs(n: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, n));
}

const ref = (s: SubmissionRow): SubmissionRef => ({ id: s.id, hotkey: s.hotkey });

/**
 * How revealed bytes are stored and recognised: their hex, or for bytes over the chain's limit (only a local
 * file can hold such) a prefix and the sha256 of the whole, so hostile input cannot bloat the database.
 */
function commitmentKey(bytes: Uint8Array): string {
  if (bytes.length <= MAX_TIMELOCK_COMMITMENT_BYTES) return u8aToHex(bytes);
  return `${u8aToHex(bytes.subarray(0, 64))}…sha256:${sha256Hex(bytes)}`;
}

export class Validator {
  private stopping = new AbortController();
  /** the submissions being evaluated now (for a clean stop) */
  readonly current = new Set<number>();
  private readonly maxAttempts: number;
  private readonly maxFetchFailures: number;

  constructor(
    readonly store: ValidatorStore,
    private readonly chain: ValidatorChain,
    private readonly evaluate: EvaluateFn,
    private readonly log: Logger,
    private readonly o: ValidatorOptions,
  ) {
    this.maxAttempts = o.maxAttempts ?? 3;
    this.maxFetchFailures = o.maxFetchFailures ?? 6;
  }

  get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Asks the loop to stop at the next safe point (and wakes it if it sleeps). */
  stop(): void {
    this.stopping.abort();
  }

  /**
   * An operator's stop (SIGTERM, SIGINT). During an evaluation: it goes back to the queue without counting the
   * attempt, and the caller should exit at once ('exit'; the sandboxed runners die with the process). Otherwise
   * the loop stops at its next step ('wait').
   */
  stopNow(why: string): 'exit' | 'wait' {
    this.stop();
    if (this.current.size === 0) {
      this.log.log('info', `${why}: stopping`);
      return 'wait';
    }
    for (const id of this.current) {
      this.store.returnToPending(id, `stopped by ${why} during the evaluation; it will start over`, { refundAttempt: true });
      this.log.log('warn', `${why}: the evaluation goes back to the queue; exiting`, this.refOf(id));
    }
    return 'exit';
  }

  /** Puts evaluations a previous process left unfinished back in the queue. */
  recover(): void {
    const { resumed, gaveUp } = this.store.recover(this.maxAttempts);
    for (const id of resumed) this.log.log('warn', `evaluation was interrupted by a stop of the validator; it will start over`, this.refOf(id));
    for (const id of gaveUp) this.log.log('warn', `rejected: interrupted ${this.maxAttempts} times`, this.refOf(id));
    // The leader follows from the verdicts and hparams' leader_threshold, which may have changed since the last run.
    this.store.db.transaction(() => this.updateLeader())();
  }

  private refOf(id: number): SubmissionRef {
    const s = this.store.submission(id);
    return { id, hotkey: s?.hotkey ?? '?' };
  }

  /** Runs passes until stopped (or once); chain outages are retried with backoff, never fatal. */
  async run(opts: { once?: boolean } = {}): Promise<PassSummary | null> {
    this.recover();
    let failures = 0;
    for (;;) {
      if (this.stopped) return null;
      let summary: PassSummary;
      try {
        summary = await this.pass();
        failures = 0;
      } catch (e) {
        failures++;
        const wait = backoffMs(failures - 1, this.o.outageBackoffMs ?? 5000, 300000);
        this.log.log('error', `pass failed (${failures} in a row): ${(e as Error).message}; retrying in ${Math.round(wait / 1000)} s`);
        if (opts.once && failures >= 3) throw e;
        await sleep(wait, this.stopping.signal);
        continue;
      }
      if (opts.once) return summary;
      await sleep((this.o.pollSeconds ?? 12) * 1000, this.stopping.signal);
    }
  }

  /** One pass: discover, evaluate what is due, set weights when due. */
  async pass(): Promise<PassSummary> {
    const block = await this.chain.currentBlock();
    let neurons = await this.chain.neurons(this.o.netuid);
    this.store.setMeta('last_block', String(block));
    this.store.setMeta('last_pass_at', new Date().toISOString());
    const discovered = await this.discover(neurons);
    const summary: PassSummary = { block, discovered, evaluated: 0, accepted: 0, rejected: 0, weightsSet: false, pending: 0 };
    summary.weightsSet = await this.maybeSetWeights(block, neurons);
    // Always the earliest commitment due next, new ones included: a long queue never holds back discovery
    // (the chain keeps only a hotkey's last 10 reveals) nor weights. One evaluation per free slot.
    const free = [...(this.o.slots ?? [[]])];
    const running = new Map<number, { sha256: string | null; job: Promise<void> }>();
    let failure: unknown = null;
    const launch = () => {
      while (free.length > 0 && !this.stopped && failure === null) {
        // Not a copy of code being evaluated now: the later of two copies waits for the earlier one's verdict,
        // and is then rejected as its duplicate, exactly as when they are evaluated one after the other.
        const busy = new Set([...running.values()].map((r) => r.sha256));
        const s = this.store.due().find((r) => !running.has(r.id) && !(r.sha256 !== null && busy.has(r.sha256)));
        if (!s) return;
        const slot = free.shift() as string[];
        const job = this.evaluateOne(s, neurons, slot)
          .then((outcome) => {
            if (outcome === 'accepted') summary.accepted++;
            if (outcome === 'rejected') summary.rejected++;
            if (outcome === 'accepted' || outcome === 'rejected') summary.evaluated++;
          })
          .catch((e) => {
            failure ??= e;
          })
          .finally(() => {
            running.delete(s.id);
            free.push(slot);
          });
        running.set(s.id, { sha256: s.sha256, job });
      }
    };
    launch();
    while (running.size > 0) {
      await Promise.race([...running.values()].map((r) => r.job));
      if (this.stopped || failure !== null) continue; // let the others finish; start nothing new
      try {
        const b = await this.chain.currentBlock();
        this.store.setMeta('last_block', String(b));
        neurons = await this.chain.neurons(this.o.netuid);
        summary.discovered += await this.discover(neurons);
        summary.weightsSet = (await this.maybeSetWeights(b, neurons)) || summary.weightsSet;
      } catch (e) {
        failure ??= e;
        continue;
      }
      launch();
    }
    // A failure of the store or the chain fails the pass (retried with backoff), once nothing runs any more.
    if (failure !== null) throw failure;
    summary.pending = this.store.countByState().pending;
    return summary;
  }

  /** Records every revealed commitment not seen before; returns how many. */
  async discover(neurons: Neuron[]): Promise<number> {
    const uidOf = new Map(neurons.map((n) => [n.hotkey, n.uid]));
    const revealed = (await this.chain.revealed(this.o.netuid, [...uidOf.keys()]))
      .filter((r) => r.block >= (this.o.sinceBlock ?? 0))
      .sort((a, b) => a.block - b.block || (a.hotkey < b.hotkey ? -1 : a.hotkey > b.hotkey ? 1 : 0));
    const hp = this.o.hparams;
    let n = 0;
    for (const r of revealed) {
      const hex = commitmentKey(r.bytes);
      if (this.store.has(r.hotkey, r.block, hex)) continue;
      const check = checkCommitment(r.bytes, { local: this.o.local, maxCodeBytes: hp.max_code_bytes });
      const sub: NewSubmission = { hotkey: r.hotkey, uid: uidOf.get(r.hotkey) ?? null, block: r.block, commitmentHex: hex, sha256: null, size: null, location: null };
      if (!check.ok) {
        sub.rejected = { code: 'invalid_commitment', reason: check.reason };
      } else {
        sub.sha256 = check.payload.sha256;
        sub.size = check.payload.size;
        sub.location = JSON.stringify(redactPayload(check.payload).loc);
        // The chain does not enforce a gap between commitments: the validator does.
        const prev = this.store.previousCounted(r.hotkey, r.block);
        const gap = hp.min_blocks_between_commits;
        if (prev && r.block - prev.block < gap) {
          sub.rejected = { code: 'rate_limited', reason: `revealed at block ${r.block}, ${r.block - prev.block} blocks after this hotkey's previous submission (#${prev.id}, block ${prev.block}); min_blocks_between_commits is ${gap}` };
        }
      }
      const [id] = this.store.addSubmissions([sub]);
      if (id === undefined) continue;
      n++;
      const who = { id, hotkey: r.hotkey };
      if (sub.rejected) this.log.log('warn', `rejected on sight: ${sub.rejected.code}: ${sub.rejected.reason}`, who);
      else this.log.log('info', `new submission: uid ${sub.uid}, revealed at block ${r.block}, sha256 ${sub.sha256?.slice(0, 16)}…, ${sub.size} bytes`, who);
    }
    return n;
  }

  private retryAt(failures: number): string {
    return new Date(Date.now() + backoffMs(failures, 60000, 3600000)).toISOString();
  }

  /** Evaluates one pending submission to a verdict (or back to the queue when that is not its fault). */
  async evaluateOne(s: SubmissionRow, neurons: Neuron[], slot: string[] = []): Promise<'accepted' | 'rejected' | 'requeued'> {
    const who = ref(s);
    if (!neurons.some((n) => n.hotkey === s.hotkey)) {
      this.store.reject(s.id, 'deregistered', ['the hotkey is no longer registered on the subnet']);
      this.log.log('warn', 'rejected: deregistered before its evaluation', who);
      return 'rejected';
    }
    const copy = this.store.judgedCopyOf(s);
    if (copy) {
      this.store.reject(s.id, 'duplicate', [`the same code (sha256 ${s.sha256}) as submission #${copy.id} by ${copy.hotkey}, revealed earlier at block ${copy.block}`]);
      this.log.log('warn', `rejected: duplicate of #${copy.id}`, who);
      return 'rejected';
    }
    const check = checkCommitment(hexToU8a(s.commitment_hex), { local: this.o.local, maxCodeBytes: this.o.hparams.max_code_bytes });
    if (!check.ok) {
      // Checked when it was discovered; the rules (hparams) may have changed since.
      this.store.reject(s.id, 'invalid_commitment', [check.reason]);
      return 'rejected';
    }
    this.store.startEvaluation(s.id);
    this.current.add(s.id);
    try {
      this.log.log('info', `fetching ${s.size} bytes`, who);
      let code: Buffer;
      try {
        code = await (this.o.fetch ?? fetchCommittedCode)(check.payload, {
          maxBytes: this.o.hparams.max_code_bytes,
          local: this.o.local,
          timeoutMs: this.o.fetchTimeoutMs,
          r2Endpoint: this.o.r2Endpoint,
        });
      } catch (e) {
        const err = e instanceof FetchError ? e : new FetchError((e as Error).message, true);
        const failures = s.fetch_failures + 1;
        if (err.retryable && failures < this.maxFetchFailures) {
          const at = this.retryAt(failures - 1);
          this.store.returnToPending(s.id, `fetch failed (${failures} of ${this.maxFetchFailures}): ${err.message}; retry after ${at}`, { retryAt: at, refundAttempt: true, fetchFailure: true });
          this.log.log('warn', `fetch failed (${failures} of ${this.maxFetchFailures}): ${err.message}; retrying after ${at}`, who);
          return 'requeued';
        }
        this.store.reject(s.id, 'fetch', [err.message]);
        this.log.log('warn', `rejected: fetch: ${err.message}`, who);
        return 'rejected';
      }
      const file = path.join(this.o.dataDir, 'code', `${s.sha256}.cpp`);
      if (!fs.existsSync(file)) writeAtomic(file, [code]);

      let lastProgress = '';
      let verdict: Verdict;
      try {
        verdict = await this.evaluate(
          file,
          (text) => {
            if (text !== lastProgress) this.log.log('info', text, who);
            lastProgress = text;
          },
          slot,
        );
      } catch (e) {
        // The harness could not judge (e.g. the official baseline failed here): not the submission's verdict.
        const attempts = s.attempts + 1;
        const message = (e as Error).message;
        if (attempts >= this.maxAttempts) {
          this.store.reject(s.id, 'evaluation_error', [`the evaluation failed ${attempts} times without a verdict; last: ${message}`]);
          this.log.log('error', `rejected after ${attempts} evaluation errors: ${message}`, who);
          return 'rejected';
        }
        const at = this.retryAt(attempts - 1);
        this.store.returnToPending(s.id, `evaluation error (attempt ${attempts} of ${this.maxAttempts}): ${message}`, { retryAt: at });
        this.log.log('error', `evaluation error (attempt ${attempts} of ${this.maxAttempts}): ${message}; retrying after ${at}`, who);
        return 'requeued';
      }
      this.store.recordVerdict(s.id, verdict, () => this.updateLeader());
      if (verdict.accepted) this.log.log('info', `ACCEPTED: ${verdict.tokens_per_second?.toFixed(1)} tokens/s (median of ${verdict.runs.length} runs)`, who);
      else this.log.log('warn', `REJECTED: ${verdict.reasons.join('; ')}`, who);
      return verdict.accepted ? 'accepted' : 'rejected';
    } finally {
      this.current.delete(s.id);
    }
  }

  private scored(): Scored[] {
    return this.store.accepted().map((r) => ({ id: r.id, block: r.block, score: r.tokens_per_second as number }));
  }

  /** Inside the verdict's transaction: records a change of leader. */
  private updateLeader(): void {
    const history = leadershipHistory(this.scored(), this.o.hparams.leader_threshold);
    const now = history.length ? history[history.length - 1] : null;
    const last = this.store.lastLeader();
    if (now && (!last || last.submission_id !== now.leadership.leader.id)) {
      this.store.addLeader(now.leadership.leader.id, now.leadership.since, now.leadership.leader.score, now.threshold);
      const s = this.store.submission(now.leadership.leader.id) as SubmissionRow;
      this.log.log('info', `NEW LEADER: ${now.leadership.leader.score.toFixed(1)} tokens/s${last ? ` (beat ${last.score.toFixed(1)} by more than the threshold ${(now.threshold * 100).toFixed(2)}%)` : ''}`, ref(s));
    }
  }

  /** The current leader as weights see it. */
  leader(): { submissionId: number; hotkey: string; score: number } | null {
    const l = currentLeader(this.scored(), this.o.hparams.leader_threshold);
    if (!l) return null;
    const s = this.store.submission(l.leader.id) as SubmissionRow;
    return { submissionId: s.id, hotkey: s.hotkey, score: l.leader.score };
  }

  /** Sets weights when set_weights_interval_blocks have passed since the last ones that went through. */
  async maybeSetWeights(block: number, neurons: Neuron[]): Promise<boolean> {
    const hp = this.o.hparams;
    const last = this.store.lastSentWeights();
    if (last && block - last.block < hp.set_weights_interval_blocks) return false;
    // After a failure, wait a tenth of the interval before trying again.
    const attempt = this.store.lastWeightsAttempt();
    if (attempt && attempt.status !== 'sent' && block - attempt.block < Math.max(1, Math.floor(hp.set_weights_interval_blocks / 10))) return false;
    const plan = planWeights(this.leader(), neurons, hp.burn_rate, hp.burn_uid);
    const id = this.store.beginWeights({ block, leaderSubmissionId: plan.leaderSubmissionId, reason: plan.reason, uids: plan.uids, weights: plan.weights });
    try {
      const r = await this.chain.setWeights({ netuid: this.o.netuid, hotkey: this.o.hotkey, uids: plan.uids, weights: plan.weights });
      this.store.finishWeights(id, { status: 'sent', mode: r.mode, txHash: r.txHash, revealRound: r.revealRound });
      this.log.log('info', `weights ${r.mode === 'local' ? 'recorded' : r.mode === 'set_weights' ? 'set' : `committed (reveal round ${r.revealRound})`} at block ${r.block ?? block}: ${plan.reason}; uids [${plan.uids.join(', ')}] weights [${plan.weights.join(', ')}]`);
      return true;
    } catch (e) {
      this.store.finishWeights(id, { status: 'failed', error: (e as Error).message });
      this.log.log('error', `setting weights failed: ${(e as Error).message}; trying again in ${Math.max(1, Math.floor(hp.set_weights_interval_blocks / 10))} blocks`);
      return false;
    }
  }
}
