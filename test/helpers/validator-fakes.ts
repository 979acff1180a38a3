// Stand-ins for the validator's tests: an in-memory network and a harness that
// returns chosen verdicts without compiling or running anything.
import { THRESHOLD_KEYS, type ThresholdValues } from '../../src/config/hparams';
import { encodePayload, type CommitmentPayload } from '../../src/chain/payload';
import type { Neuron, RevealedCommitment, ValidatorChain, WeightsReceipt, WeightsRequest, WeightsSettings } from '../../src/chain/validator-chain';
import type { Verdict } from '../../src/harness/types';
import { codeKey, sha256Hex } from '../../src/storage/store';

type Method = 'currentBlock' | 'neurons' | 'revealed' | 'setWeights';

export class FakeValidatorChain implements ValidatorChain {
  readonly name = 'fake';
  readonly kind = 'local' as const;
  block = 100;
  neuronList: Neuron[] = [];
  commitments: RevealedCommitment[] = [];
  weightCalls: WeightsRequest[] = [];
  /** calls of these methods throw while they are in the set */
  failing = new Set<Method>();
  /** calls of these methods throw this many more times */
  failTimes = new Map<Method, number>();

  private check(m: Method): void {
    const n = this.failTimes.get(m) ?? 0;
    if (n > 0) this.failTimes.set(m, n - 1);
    if (this.failing.has(m) || n > 0) throw new Error(`${m}: connection refused (fake outage)`);
  }
  async currentBlock(): Promise<number> {
    this.check('currentBlock');
    return this.block;
  }
  async neurons(): Promise<Neuron[]> {
    this.check('neurons');
    return [...this.neuronList];
  }
  async revealed(_netuid: number, hotkeys: string[]): Promise<RevealedCommitment[]> {
    this.check('revealed');
    return this.commitments.filter((c) => hotkeys.includes(c.hotkey));
  }
  async weightsSettings(): Promise<WeightsSettings> {
    return { commitReveal: false, versionKey: 0n, tempo: 360, revealPeriodEpochs: 1, commitRevealVersion: 4, rateLimit: 0 };
  }
  async setWeights(req: WeightsRequest): Promise<WeightsReceipt> {
    this.check('setWeights');
    this.weightCalls.push(req);
    return { mode: 'local', block: this.block, txHash: null, revealRound: null, versionKey: 0n };
  }
  async close(): Promise<void> {}

  /** Registers `hotkey` (next uid) unless it is, and reveals a local commitment of `code` at `block`. */
  reveal(hotkey: string, code: string, block: number, over: Partial<CommitmentPayload> = {}): string {
    if (!this.neuronList.some((n) => n.hotkey === hotkey)) this.neuronList.push({ uid: this.neuronList.length + 2, hotkey });
    const sha256 = sha256Hex(Buffer.from(code));
    const p = { v: 1, sha256, size: Buffer.byteLength(code), loc: { kind: 'local', key: codeKey(sha256) }, ...over } as CommitmentPayload;
    this.commitments.push({ hotkey, block, bytes: encodePayload(p) });
    return sha256;
  }
}

/** A verdict as the harness gives it: accepted at `tps`, or rejected with `reasons`. */
export function fakeVerdict(tps: number | null, reasons: string[] = [], seed = 42): Verdict {
  const accepted = tps !== null;
  const run = {
    seed,
    ok: accepted,
    failures: accepted ? [] : [{ code: 'probe_loss' as const, message: reasons[0] ?? 'off' }],
    seconds: 1,
    tokens: 1000,
    tokens_per_second: tps ?? 500,
    overhead_seconds: 0.5,
    checkpoint_seconds: null,
    step_seconds: 0.2,
    reported_loss: 7,
    reported_peak_memory_bytes: null,
    checks: null,
  };
  return {
    accepted,
    parameters: 1000,
    reasons: accepted ? [] : reasons.map((r) => `run 1: probe_loss: ${r}`),
    runs: [run],
    reference_runs: [{ ...run, ok: true, failures: [] }],
    tokens_per_second: tps,
    mfu: null,
    limits: Object.fromEntries(THRESHOLD_KEYS.map((k) => [k, 1])) as ThresholdValues,
    sandbox: { bwrap: '/usr/bin/bwrap', uid: 65534, root_because: null },
  };
}
