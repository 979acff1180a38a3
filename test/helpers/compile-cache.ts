// One compile cache for the whole mocha run (.mocharc.json "require"): every
// evaluation, `miner test` and validator the tests start, in this process or
// a child, compiles into it (TOURNAMENT_COMPILE_CACHE), so the precompiled
// header and each plugin (the baseline above all) are made once per run
// instead of once per test. It starts empty, so a run measures cold compiles,
// unless TOURNAMENT_COMPILE_CACHE is already set (to keep one between runs).
import * as fs from 'fs';
import { tmpDir } from './tmp';

if (!process.env.TOURNAMENT_COMPILE_CACHE) {
  const dir = tmpDir('compile-cache');
  fs.chmodSync(dir, 0o755); // the sandbox's own uid must reach the plugins
  process.env.TOURNAMENT_COMPILE_CACHE = dir;
}
