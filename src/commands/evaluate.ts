// tournament evaluate: the validator. Reads revealed commitments, evaluates
// each submission through the trusted harness, keeps everything in SQLite
// under --data-dir, and sets weights every set_weights_interval_blocks.
import type { Argv, CommandModule } from 'yargs';
import * as fs from 'fs';
import * as path from 'path';
import { loadHparams } from '../config/hparams';
import { resolveNetwork } from '../chain/network';
import { openValidatorChain } from '../chain/validator-chain';
import { defaultDevice } from '../engine/model';
import { UserError } from '../errors';
import { requireCalibrated } from '../harness/calibrate';
import { gpuSlots } from '../harness/devices';
import { harnessEvaluator } from '../validator/harness';
import { lockDataDir } from '../validator/lock';
import { createLogger } from '../validator/log';
import { Validator } from '../validator/loop';
import { ValidatorStore } from '../validator/store';
import { intOption, withBenchmarkDir, withHparams, withJson, withNetwork, withWallet } from './options';

export const DEFAULT_DATA_DIR = 'validator-data';

export function withDataDir<T>(y: Argv<T>) {
  return y.option('data-dir', {
    type: 'string',
    default: DEFAULT_DATA_DIR,
    describe: 'Where the validator keeps its database (validator.sqlite), fetched code and compiled plugins',
  });
}

interface Args {
  hparams: string;
  'benchmark-dir': string;
  'data-dir': string;
  json: boolean;
  network: string;
  netuid?: number;
  'wallet.name'?: string;
  'wallet.hotkey'?: string;
  'wallet.path'?: string;
  once: boolean;
  device?: string;
  gpus?: string;
  'poll-seconds': number;
  'since-block': number;
  'max-attempts': number;
  'max-fetch-failures': number;
  'fetch-timeout': number;
  'log-format': string;
  'peak-tflops'?: number;
  'allow-uncalibrated': boolean;
}

export const evaluateCommand: CommandModule<object, Args> = {
  command: 'evaluate',
  describe: 'Run the validator: evaluate every revealed submission, keep the leaderboard, set weights',
  builder: (y) =>
    withWallet(withNetwork(withJson(withHparams(withBenchmarkDir(withDataDir(y))))))
      .option('once', { type: 'boolean', default: false, describe: 'One pass (discover, evaluate everything due, set weights if due), then exit' })
      .option('device', { type: 'string', describe: 'cpu, cuda or cuda:N (default: cuda when available)' })
      .option('gpus', {
        type: 'string',
        describe:
          'Devices to evaluate on, e.g. 0,1,2,3: one evaluation at a time per gpus_per_evaluation of them, so several submissions are evaluated at once (default: the one --device)',
      })
      .conflicts('gpus', 'device')
      .option('poll-seconds', { type: 'number', default: 12, describe: 'Seconds between passes when there is nothing to do' })
      .option('since-block', { type: 'number', default: 0, describe: 'Ignore commitments revealed before this block (e.g. on a first start)' })
      .option('max-attempts', { type: 'number', default: 3, describe: 'Evaluation attempts without a verdict (validator stopped, harness error) before a submission is rejected' })
      .option('max-fetch-failures', { type: 'number', default: 6, describe: 'Failed downloads (retried with backoff from 1 min to 1 h) before a submission is rejected' })
      .option('fetch-timeout', { type: 'number', default: 60, describe: 'Seconds one download attempt may take' })
      .option('log-format', { choices: ['text', 'json'], default: 'text', describe: 'Log lines on stderr: text, or one JSON object per line' })
      .option('peak-tflops', { type: 'number', describe: 'Device peak bf16 TFLOP/s, for the MFU recorded with each verdict' })
      .option('allow-uncalibrated', {
        type: 'boolean',
        default: false,
        describe: 'Judge even when the verification thresholds in force were never calibrated on this kind of device (see `tournament calibrate`)',
      })
      .epilogue(
        [
          'The validator is safe to kill at any moment: every step is recorded in the database before it is taken, and a',
          'restart resumes (an interrupted evaluation starts over; a submission is never judged twice, never skipped).',
          'Only one validator may run on a data directory. On --network local, commitments come from .local_commitments/,',
          'code from .local_storage/ and weights are recorded in the database only; no wallet is needed.',
          'Read the state with `tournament status --data-dir DIR`. Logs go to stderr. With --once --json, the pass summary',
          'is printed on stdout as one JSON document.',
        ].join(' '),
      )
      .example('$0 evaluate --network local --once', 'One pass over the local network (see `npm run local-tournament`)')
      .example('$0 evaluate --wallet.name validator --wallet.hotkey default --data-dir /var/lib/tournament', 'Run on finney') as unknown as Argv<Args>,
  handler: async (a) => {
    const hparams = loadHparams(a.hparams);
    const network = resolveNetwork(a.network);
    const netuid = a.netuid ?? hparams.netuid;
    if (!Number.isInteger(netuid) || netuid < 0 || netuid > 65535) throw new UserError(`--netuid must be an integer in [0, 65535], got ${a.netuid}`);
    for (const [n, v] of [['max-attempts', a['max-attempts']], ['max-fetch-failures', a['max-fetch-failures']], ['poll-seconds', a['poll-seconds']], ['fetch-timeout', a['fetch-timeout']]] as const) {
      intOption(n, v, 1, 1);
    }
    intOption('since-block', a['since-block'], 0, 0);
    for (const f of [path.join(a['benchmark-dir'], 'model', 'config.json'), path.join(a['benchmark-dir'], 'data', 'train.pt')]) {
      if (!fs.existsSync(f)) throw new UserError(`${f} does not exist: the benchmark is not set up`, { hint: `run \`tournament setup-benchmark\` (--preset tiny for the CPU default) first, or pass --benchmark-dir` });
    }
    // Evaluation slots: one evaluation at a time on each (checked before anything is opened).
    const slots = a.gpus === undefined ? undefined : gpuSlots(a.gpus, hparams.gpus_per_evaluation);
    const device = slots ? slots[0][0] : (a.device ?? defaultDevice());
    // Thresholds measured on another kind of device would accept cheats or reject honest code here.
    const calibration = a['allow-uncalibrated'] ? null : requireCalibrated(hparams, device, a.hparams);
    // Each evaluation's native work (runs, comparisons) holds one of libuv's worker threads while it runs, and
    // there are 4 unless told otherwise: more slots than that would wait for each other. libuv reads this when
    // the pool first starts, so it must be set before anything asynchronous runs (what ran so far is synchronous).
    if (slots && slots.length > 2 && !process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(slots.length + 2);
    const dataDir = path.resolve(a['data-dir']);
    const log = createLogger(a['log-format'] as 'text' | 'json');
    // The hotkey signs weights on subtensor; the local network records them and needs none.
    const hotkey =
      network.kind === 'local'
        ? null
        : await (await import('../wallet/wallet')).loadHotkey({ name: a['wallet.name'] ?? 'default', hotkey: a['wallet.hotkey'] ?? 'default', path: a['wallet.path'] });

    const release = lockDataDir(dataDir);
    const store = ValidatorStore.open(dataDir, { network: network.name, netuid });
    const chain = await openValidatorChain(network, hparams.block_time).catch((e) => {
      store.close();
      release();
      throw e;
    });
    const validator = new Validator(store, chain, harnessEvaluator({ hparams, benchmarkDir: a['benchmark-dir'], device, dataDir, peakTflops: a['peak-tflops'] }), log, {
      slots,
      netuid,
      hparams,
      dataDir,
      local: network.kind === 'local',
      hotkey,
      maxAttempts: a['max-attempts'],
      maxFetchFailures: a['max-fetch-failures'],
      pollSeconds: a['poll-seconds'],
      sinceBlock: a['since-block'],
      fetchTimeoutMs: a['fetch-timeout'] * 1000,
    });

    const onSignal = (sig: NodeJS.Signals) => {
      if (validator.stopNow(sig) === 'exit') {
        store.close();
        release();
        process.exit(sig === 'SIGINT' ? 130 : 143);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    try {
      if (hotkey && chain.kind === 'subtensor') {
        const mine = (await chain.neurons(netuid)).find((n) => n.hotkey === hotkey.address);
        if (!mine) throw new UserError(`the validator's hotkey ${hotkey.address} is not registered on subnet ${netuid} of ${chain.name}`, { hint: `register it: btcli subnet register --netuid ${netuid}` });
        log.log('info', `validator hotkey ${hotkey.address} is uid ${mine.uid}`);
      }
      const where = slots ? `${slots.length} evaluation slot(s): ${slots.map((s) => s.join('+')).join(', ')}` : `device ${device}`;
      log.log('info', `validator on ${chain.name}, subnet ${netuid}, ${where}, data in ${dataDir}${a.once ? ' (one pass)' : ''}`);
      log.log(
        calibration ? 'info' : 'warn',
        calibration
          ? `verification thresholds calibrated on ${calibration.device} on ${calibration.date}`
          : 'verification thresholds not checked for calibration on this device (--allow-uncalibrated)',
      );
      const summary = await validator.run({ once: a.once });
      if (a.once && summary) {
        if (a.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        else {
          process.stdout.write(
            `block ${summary.block}: ${summary.discovered} new, ${summary.evaluated} evaluated (${summary.accepted} accepted, ${summary.rejected} rejected), ` +
              `${summary.pending} pending, weights ${summary.weightsSet ? 'set' : 'not due'}\n`,
          );
        }
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await chain.close();
      store.close();
      release();
    }
  },
};
