// A validator process for the kill-and-restart test: the real loop and store
// over a network described in a JSON file, with a stand-in harness that takes
// `evalMs` per evaluation. It appends "start <id> <ms>" / "end <id> <ms>" to a
// journal (fsync'd) and, when CRASH_AT=point:n is set, SIGKILLs itself the
// n-th time the store reaches that write point (inside its transaction).
//   node validator-child.js CONFIG.json
import * as fs from 'fs';
import { silentLogger } from '../../src/validator/log';
import { Validator } from '../../src/validator/loop';
import { ValidatorStore } from '../../src/validator/store';
import { loadHparams } from '../../src/config/hparams';
import { fakeVerdict, FakeValidatorChain } from './validator-fakes';

export interface ChildConfig {
  dataDir: string;
  hparams: string;
  journal: string;
  evalMs: number;
  /** hotkey, code text, reveal block; code containing "cheat" is rejected, else accepted at its length in tokens/s */
  reveals: [string, string, number][];
}

function journal(file: string, line: string): void {
  const fd = fs.openSync(file, 'a');
  fs.writeSync(fd, `${line} ${Date.now()}\n`);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

async function main(): Promise<void> {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as ChildConfig;
  const chain = new FakeValidatorChain();
  // The chain's height moves on across restarts, as a real one does (weights are due after every evaluation).
  const height = () => Math.floor(Date.now() / 5) - 340000000000;
  chain.block = height();
  const code = new Map<string, string>();
  for (const [hk, text, block] of cfg.reveals) code.set(chain.reveal(hk, text, block), text);
  const store = ValidatorStore.open(cfg.dataDir, { network: 'fake', netuid: 3 });
  const crash = process.env.CRASH_AT?.split(':');
  if (crash) {
    let n = 0;
    store.setWriteHook((point) => {
      if (point === crash[0] && ++n === Number(crash[1])) {
        journal(cfg.journal, `crash ${point}`);
        process.kill(process.pid, 'SIGKILL');
      }
    });
  }
  const hp = loadHparams(cfg.hparams);
  const v = new Validator(
    store,
    chain,
    async (file) => {
      const text = fs.readFileSync(file, 'utf8');
      const id = store.db.prepare(`SELECT id FROM submissions WHERE state = 'evaluating'`).get() as { id: number };
      journal(cfg.journal, `start ${id.id}`);
      await new Promise((r) => setTimeout(r, cfg.evalMs));
      journal(cfg.journal, `end ${id.id}`);
      return text.includes('cheat') ? fakeVerdict(null, ['probe loss off'], Date.now()) : fakeVerdict(text.length, [], Date.now());
    },
    silentLogger,
    {
      netuid: 3,
      hparams: { ...hp, set_weights_interval_blocks: 1 },
      dataDir: cfg.dataDir,
      local: true,
      hotkey: null,
      maxAttempts: 5,
      fetch: async (p) => Buffer.from(code.get(p.sha256) ?? ''),
    },
  );
  setInterval(() => (chain.block = height()), 5).unref();
  process.on('SIGTERM', () => {
    if (v.stopNow('SIGTERM') === 'exit') {
      store.close();
      process.exit(143);
    }
  });
  const s = await v.run({ once: true });
  store.close();
  process.stdout.write(JSON.stringify(s) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
