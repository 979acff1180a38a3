// The validator's memory: one SQLite database (better-sqlite3, WAL, full
// fsync) under the data directory. Every state change is one transaction, made
// before the action it records is taken, so a kill at any moment leaves either
// the old state or the new one:
//
//   submissions  one row per revealed commitment (hotkey, block, bytes): its
//                state pending -> evaluating -> accepted | rejected, reasons,
//                score, the full verdict
//   runs         every timed run of an evaluation: seed, timings, every check
//   leaders      each change of leader, with the threshold it beat
//   weights      every weight setting: pending before it is sent, then sent
//                or failed
//   events       what happened, for `status` and people reading afterwards
//
// A submission found `evaluating` at start-up was interrupted: it goes back to
// pending (its partial runs are discarded) unless it has used up its attempts.
import * as fs from 'fs';
import * as path from 'path';
import Database from 'better-sqlite3';
import type { Verdict } from '../harness/types';
import { UserError } from '../errors';

const SCHEMA_VERSION = 1;

export type SubmissionState = 'pending' | 'evaluating' | 'accepted' | 'rejected';

/** Why a submission was rejected, as a stable code (the reasons say more). */
export type RejectCode =
  | 'invalid_commitment' // fails decoding or a field check
  | 'rate_limited' // revealed too soon after the hotkey's previous one
  | 'duplicate' // the same code as an earlier submission that was judged
  | 'deregistered' // the hotkey left the subnet before its evaluation
  | 'fetch' // the code could not be fetched, or is not what was committed
  | 'verification' // evaluated and failed a check (compile, crash, timeout, a verification check)
  | 'evaluation_error' // the harness could not reach a verdict, attempt after attempt
  | 'interrupted'; // evaluations kept being interrupted (the validator died during each)

export interface SubmissionRow {
  id: number;
  hotkey: string;
  uid: number | null;
  block: number;
  commitment_hex: string;
  sha256: string | null;
  size: number | null;
  location: string | null;
  state: SubmissionState;
  reject_code: RejectCode | null;
  reasons: string | null;
  tokens_per_second: number | null;
  attempts: number;
  fetch_failures: number;
  retry_at: string | null;
  discovered_at: string;
  started_at: string | null;
  finished_at: string | null;
  verdict: string | null;
}

export interface NewSubmission {
  hotkey: string;
  uid: number | null;
  block: number;
  commitmentHex: string;
  sha256: string | null;
  size: number | null;
  /** JSON of the redacted payload */
  location: string | null;
  /** set when the commitment is refused on sight */
  rejected?: { code: RejectCode; reason: string };
}

export interface LeaderRow {
  id: number;
  submission_id: number;
  block: number;
  score: number;
  threshold: number;
  at: string;
}

export type WeightsStatus = 'pending' | 'sent' | 'failed' | 'unknown';

export interface WeightsRow {
  id: number;
  block: number;
  created_at: string;
  leader_submission_id: number | null;
  reason: string;
  uids: string;
  weights: string;
  mode: string | null;
  status: WeightsStatus;
  tx_hash: string | null;
  reveal_round: string | null;
  error: string | null;
}

export interface EventRow {
  id: number;
  at: string;
  level: 'info' | 'warn' | 'error';
  submission_id: number | null;
  message: string;
}

/** Test hook: called at named points inside write transactions (the kill-and-restart test dies there). */
export type WritePointHook = (point: string) => void;

const now = () => new Date().toISOString();

export const DB_FILE = 'validator.sqlite';

export interface StoreIdentity {
  network: string;
  netuid: number;
}

export class ValidatorStore {
  readonly db: Database.Database;
  private hook: WritePointHook = () => undefined;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  /** Opens (creating when absent) the database in `dataDir`, for the network and subnet it was made for. */
  static open(dataDir: string, id: StoreIdentity): ValidatorStore {
    fs.mkdirSync(dataDir, { recursive: true });
    const db = new Database(path.join(dataDir, DB_FILE));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL'); // a committed verdict survives power loss, not only a killed process
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 10000');
    const store = new ValidatorStore(db);
    store.migrate();
    store.checkIdentity(id, path.join(dataDir, DB_FILE));
    return store;
  }

  /** Opens an existing database read-only (status); null when there is none. */
  static openReadOnly(dataDir: string): ValidatorStore | null {
    const file = path.join(dataDir, DB_FILE);
    if (!fs.existsSync(file)) return null;
    const db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    const store = new ValidatorStore(db);
    const v = store.meta('schema_version');
    if (v !== String(SCHEMA_VERSION)) throw new UserError(`${file} has schema version ${v}, this build reads ${SCHEMA_VERSION}`);
    return store;
  }

  setWriteHook(h: WritePointHook): void {
    this.hook = h;
  }

  close(): void {
    this.db.close();
  }

  private migrate(): void {
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS submissions (
        id INTEGER PRIMARY KEY,
        hotkey TEXT NOT NULL,
        uid INTEGER,
        block INTEGER NOT NULL,
        commitment_hex TEXT NOT NULL,
        sha256 TEXT,
        size INTEGER,
        location TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'evaluating', 'accepted', 'rejected')),
        reject_code TEXT,
        reasons TEXT,
        tokens_per_second REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        fetch_failures INTEGER NOT NULL DEFAULT 0,
        retry_at TEXT,
        discovered_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        verdict TEXT,
        UNIQUE (hotkey, block, commitment_hex)
      );
      CREATE INDEX IF NOT EXISTS submissions_state ON submissions (state, block);
      CREATE INDEX IF NOT EXISTS submissions_sha ON submissions (sha256);
      CREATE TABLE IF NOT EXISTS runs (
        submission_id INTEGER NOT NULL REFERENCES submissions (id),
        role TEXT NOT NULL CHECK (role IN ('submission', 'reference')),
        idx INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        seconds REAL,
        tokens_per_second REAL,
        overhead_seconds REAL,
        failures TEXT NOT NULL,
        checks TEXT,
        PRIMARY KEY (submission_id, role, idx)
      );
      CREATE TABLE IF NOT EXISTS leaders (
        id INTEGER PRIMARY KEY,
        submission_id INTEGER NOT NULL REFERENCES submissions (id),
        block INTEGER NOT NULL,
        score REAL NOT NULL,
        threshold REAL NOT NULL,
        at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS weights (
        id INTEGER PRIMARY KEY,
        block INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        leader_submission_id INTEGER REFERENCES submissions (id),
        reason TEXT NOT NULL,
        uids TEXT NOT NULL,
        weights TEXT NOT NULL,
        mode TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'unknown')),
        tx_hash TEXT,
        reveal_round TEXT,
        error TEXT
      );
      CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        level TEXT NOT NULL,
        submission_id INTEGER,
        message TEXT NOT NULL
      );
    `);
    const v = this.meta('schema_version');
    if (v === null) this.setMeta('schema_version', String(SCHEMA_VERSION));
    else if (v !== String(SCHEMA_VERSION)) throw new UserError(`the validator database has schema version ${v}; this build knows ${SCHEMA_VERSION}`);
  }

  private checkIdentity(id: StoreIdentity, file: string): void {
    const net = this.meta('network');
    const netuid = this.meta('netuid');
    if (net === null) {
      this.db.transaction(() => {
        this.setMeta('network', id.network);
        this.setMeta('netuid', String(id.netuid));
      })();
      return;
    }
    if (net !== id.network || netuid !== String(id.netuid)) {
      throw new UserError(`${file} belongs to network ${net}, subnet ${netuid}; this run is for ${id.network}, subnet ${id.netuid}`, {
        hint: 'give each network and subnet its own --data-dir',
      });
    }
  }

  meta(key: string): string | null {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r ? r.value : null;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  event(level: EventRow['level'], message: string, submissionId: number | null = null): void {
    this.db.prepare('INSERT INTO events (at, level, submission_id, message) VALUES (?, ?, ?, ?)').run(now(), level, submissionId, message);
  }

  // ---- submissions -------------------------------------------------------

  has(hotkey: string, block: number, commitmentHex: string): boolean {
    return !!this.db.prepare('SELECT 1 FROM submissions WHERE hotkey = ? AND block = ? AND commitment_hex = ?').get(hotkey, block, commitmentHex);
  }

  /** Records newly revealed commitments in one transaction; returns the new rows' ids. */
  addSubmissions(subs: NewSubmission[]): number[] {
    const ins = this.db.prepare(`INSERT OR IGNORE INTO submissions
      (hotkey, uid, block, commitment_hex, sha256, size, location, state, reject_code, reasons, discovered_at, finished_at)
      VALUES (@hotkey, @uid, @block, @commitmentHex, @sha256, @size, @location, @state, @code, @reasons, @at, @finished)`);
    return this.db.transaction(() => {
      const ids: number[] = [];
      for (const s of subs) {
        const at = now();
        const r = ins.run({
          hotkey: s.hotkey,
          uid: s.uid,
          block: s.block,
          commitmentHex: s.commitmentHex,
          sha256: s.sha256,
          size: s.size,
          location: s.location,
          state: s.rejected ? 'rejected' : 'pending',
          code: s.rejected?.code ?? null,
          reasons: s.rejected ? JSON.stringify([s.rejected.reason]) : null,
          at,
          finished: s.rejected ? at : null,
        });
        if (r.changes === 1) {
          const id = Number(r.lastInsertRowid);
          ids.push(id);
          this.event(s.rejected ? 'warn' : 'info', s.rejected ? `rejected on sight: ${s.rejected.code}: ${s.rejected.reason}` : `discovered (block ${s.block})`, id);
          this.hook('add-submission');
        }
      }
      return ids;
    })();
  }

  submission(id: number): SubmissionRow | null {
    return (this.db.prepare('SELECT * FROM submissions WHERE id = ?').get(id) as SubmissionRow | undefined) ?? null;
  }

  /** The hotkey's latest submission before `block` that counts for the rate limit (not itself rate-limited). */
  previousCounted(hotkey: string, block: number): SubmissionRow | null {
    return (
      (this.db
        .prepare(`SELECT * FROM submissions WHERE hotkey = ? AND block < ? AND (reject_code IS NULL OR reject_code != 'rate_limited') ORDER BY block DESC, id DESC LIMIT 1`)
        .get(hotkey, block) as SubmissionRow | undefined) ?? null
    );
  }

  /** Pending submissions whose retry time has come, oldest commitment first. */
  due(at = now()): SubmissionRow[] {
    return this.db
      .prepare(`SELECT * FROM submissions WHERE state = 'pending' AND (retry_at IS NULL OR retry_at <= ?) ORDER BY block, hotkey, id`)
      .all(at) as SubmissionRow[];
  }

  countByState(): Record<SubmissionState, number> {
    const out: Record<SubmissionState, number> = { pending: 0, evaluating: 0, accepted: 0, rejected: 0 };
    for (const r of this.db.prepare('SELECT state, COUNT(*) AS n FROM submissions GROUP BY state').all() as { state: SubmissionState; n: number }[]) out[r.state] = r.n;
    return out;
  }

  /** An earlier submission of the same code that has a verdict (the later one is a copy). */
  judgedCopyOf(s: SubmissionRow): SubmissionRow | null {
    return (
      (this.db
        .prepare(`SELECT * FROM submissions WHERE sha256 = ? AND id != ? AND (block < ? OR (block = ? AND id < ?))
                  AND (state = 'accepted' OR (state = 'rejected' AND reject_code = 'verification')) ORDER BY block, id LIMIT 1`)
        .get(s.sha256, s.id, s.block, s.block, s.id) as SubmissionRow | undefined) ?? null
    );
  }

  /** Marks the start of an evaluation attempt (before any of it happens). */
  startEvaluation(id: number): void {
    this.db.transaction(() => {
      const r = this.db.prepare(`UPDATE submissions SET state = 'evaluating', attempts = attempts + 1, started_at = ? WHERE id = ? AND state = 'pending'`).run(now(), id);
      if (r.changes !== 1) throw new Error(`submission ${id} is not pending`);
      this.hook('start-evaluation');
      this.event('info', 'evaluation started', id);
    })();
  }

  /** An attempt that did not reach a verdict through no fault of the submission: back to pending. */
  returnToPending(id: number, message: string, opts: { retryAt?: string; refundAttempt?: boolean; fetchFailure?: boolean } = {}): void {
    this.db.transaction(() => {
      this.db
        .prepare(`UPDATE submissions SET state = 'pending', retry_at = ?, attempts = attempts - ?, fetch_failures = fetch_failures + ? WHERE id = ? AND state IN ('evaluating', 'pending')`)
        .run(opts.retryAt ?? null, opts.refundAttempt ? 1 : 0, opts.fetchFailure ? 1 : 0, id);
      this.event('warn', message, id);
    })();
  }

  reject(id: number, code: RejectCode, reasons: string[]): void {
    this.db.transaction(() => {
      this.db
        .prepare(`UPDATE submissions SET state = 'rejected', reject_code = ?, reasons = ?, finished_at = ?, retry_at = NULL WHERE id = ? AND state IN ('pending', 'evaluating')`)
        .run(code, JSON.stringify(reasons), now(), id);
      this.hook('reject');
      this.event('warn', `rejected: ${code}: ${reasons.join('; ')}`, id);
    })();
  }

  /** Records a verdict and its runs in one transaction; `after` runs inside it (the leader update). */
  recordVerdict(id: number, verdict: Verdict, after: () => void = () => undefined): void {
    const insRun = this.db.prepare(`INSERT INTO runs (submission_id, role, idx, seed, ok, seconds, tokens_per_second, overhead_seconds, failures, checks)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM runs WHERE submission_id = ?').run(id);
      for (const [role, runs] of [['submission', verdict.runs], ['reference', verdict.reference_runs]] as const) {
        runs.forEach((r, i) => {
          insRun.run(id, role, i, r.seed, r.ok ? 1 : 0, r.seconds, r.tokens_per_second, r.overhead_seconds, JSON.stringify(r.failures), r.checks ? JSON.stringify(r.checks) : null);
          this.hook('insert-run');
        });
      }
      const state: SubmissionState = verdict.accepted ? 'accepted' : 'rejected';
      this.db
        .prepare(`UPDATE submissions SET state = ?, reject_code = ?, reasons = ?, tokens_per_second = ?, verdict = ?, finished_at = ?, retry_at = NULL WHERE id = ? AND state = 'evaluating'`)
        .run(state, verdict.accepted ? null : 'verification', JSON.stringify(verdict.reasons), verdict.tokens_per_second, JSON.stringify(verdict), now(), id);
      this.hook('record-verdict');
      this.event(verdict.accepted ? 'info' : 'warn', verdict.accepted ? `accepted: ${verdict.tokens_per_second?.toFixed(1)} tokens/s` : `rejected: ${verdict.reasons.join('; ')}`, id);
      after();
    })();
  }

  /**
   * At start-up: evaluations a previous process left unfinished go back to
   * pending, or are rejected once they have been interrupted `maxAttempts` times
   * (a submission that kills the validator must not stop the tournament).
   * Weights left pending may or may not have reached the chain.
   */
  recover(maxAttempts: number): { resumed: number[]; gaveUp: number[] } {
    return this.db.transaction(() => {
      const stuck = this.db.prepare(`SELECT id, attempts FROM submissions WHERE state = 'evaluating'`).all() as { id: number; attempts: number }[];
      const resumed: number[] = [];
      const gaveUp: number[] = [];
      for (const s of stuck) {
        this.db.prepare('DELETE FROM runs WHERE submission_id = ?').run(s.id);
        if (s.attempts >= maxAttempts) {
          this.db
            .prepare(`UPDATE submissions SET state = 'rejected', reject_code = 'interrupted', reasons = ?, finished_at = ? WHERE id = ?`)
            .run(JSON.stringify([`the validator stopped during each of ${s.attempts} evaluation attempts`]), now(), s.id);
          this.event('warn', `rejected: interrupted ${s.attempts} times`, s.id);
          gaveUp.push(s.id);
        } else {
          this.db.prepare(`UPDATE submissions SET state = 'pending' WHERE id = ?`).run(s.id);
          this.event('warn', `evaluation attempt ${s.attempts} was interrupted; it starts over`, s.id);
          resumed.push(s.id);
        }
      }
      this.db.prepare(`UPDATE weights SET status = 'unknown', error = 'the validator stopped while sending these weights' WHERE status = 'pending'`).run();
      return { resumed, gaveUp };
    })();
  }

  accepted(): SubmissionRow[] {
    return this.db.prepare(`SELECT * FROM submissions WHERE state = 'accepted' ORDER BY block, id`).all() as SubmissionRow[];
  }

  recent(limit: number): SubmissionRow[] {
    return this.db.prepare('SELECT * FROM submissions ORDER BY id DESC LIMIT ?').all(limit) as SubmissionRow[];
  }

  runsOf(id: number): Record<string, unknown>[] {
    return this.db.prepare('SELECT * FROM runs WHERE submission_id = ? ORDER BY role DESC, idx').all(id) as Record<string, unknown>[];
  }

  // ---- leaders -----------------------------------------------------------

  lastLeader(): LeaderRow | null {
    return (this.db.prepare('SELECT * FROM leaders ORDER BY id DESC LIMIT 1').get() as LeaderRow | undefined) ?? null;
  }

  addLeader(submissionId: number, block: number, score: number, threshold: number): void {
    this.db.prepare('INSERT INTO leaders (submission_id, block, score, threshold, at) VALUES (?, ?, ?, ?, ?)').run(submissionId, block, score, threshold, now());
    this.hook('add-leader');
  }

  leaders(limit: number): LeaderRow[] {
    return this.db.prepare('SELECT * FROM leaders ORDER BY id DESC LIMIT ?').all(limit) as LeaderRow[];
  }

  // ---- weights -----------------------------------------------------------

  /** Records weights about to be sent (before sending them). */
  beginWeights(w: { block: number; leaderSubmissionId: number | null; reason: string; uids: number[]; weights: number[] }): number {
    const id = this.db.transaction(() => {
      const r = this.db
        .prepare(`INSERT INTO weights (block, created_at, leader_submission_id, reason, uids, weights, status) VALUES (?, ?, ?, ?, ?, ?, 'pending')`)
        .run(w.block, now(), w.leaderSubmissionId, w.reason, JSON.stringify(w.uids), JSON.stringify(w.weights));
      this.hook('begin-weights');
      return Number(r.lastInsertRowid);
    })();
    this.hook('weights-recorded'); // committed, not yet sent
    return id;
  }

  finishWeights(id: number, r: { status: 'sent' | 'failed'; mode?: string; txHash?: string | null; revealRound?: bigint | null; error?: string }): void {
    this.db
      .prepare('UPDATE weights SET status = ?, mode = ?, tx_hash = ?, reveal_round = ?, error = ? WHERE id = ?')
      .run(r.status, r.mode ?? null, r.txHash ?? null, r.revealRound?.toString() ?? null, r.error ?? null, id);
  }

  /** The latest weights that reached the chain (or the local record). */
  lastSentWeights(): WeightsRow | null {
    return (this.db.prepare(`SELECT * FROM weights WHERE status = 'sent' ORDER BY id DESC LIMIT 1`).get() as WeightsRow | undefined) ?? null;
  }

  lastWeightsAttempt(): WeightsRow | null {
    return (this.db.prepare('SELECT * FROM weights ORDER BY id DESC LIMIT 1').get() as WeightsRow | undefined) ?? null;
  }

  weightsHistory(limit: number): WeightsRow[] {
    return this.db.prepare('SELECT * FROM weights ORDER BY id DESC LIMIT ?').all(limit) as WeightsRow[];
  }

  events(limit: number): EventRow[] {
    return this.db.prepare('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit) as EventRow[];
  }
}
