// One compile cache for the whole mocha run (.mocharc.json "require"): every
// evaluation, `miner test` and validator the tests start, in this process or
// a child, compiles into it (TOURNAMENT_COMPILE_CACHE), so the precompiled
// header and each plugin (the baseline above all) are made once.
//
// The cache is content-addressed (src/harness/compile.ts: the key is the
// source's bytes with the compiler, flags, libtorch and contract headers), so
// it is kept between runs of the suite: a second `npm test` compiles only what
// changed. It lives in the system temp folder, one per uid (compileCached
// refuses a folder someone else owns or can write). TOURNAMENT_TEST_COLD_CACHE=1
// starts from an empty one, to measure cold compiles (as on a clean machine);
// TOURNAMENT_COMPILE_CACHE, when already set, is used as it is.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { tmpDir } from './tmp';

/** The kept cache folder, or undefined when it cannot be ours (made by someone else, or a link). */
function keptCache(uid: number): string | undefined {
  const dir = path.join(os.tmpdir(), `tournament-test-compile-cache-${uid}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const st = fs.lstatSync(dir);
  return st.isDirectory() && st.uid === uid ? dir : undefined;
}

if (!process.env.TOURNAMENT_COMPILE_CACHE) {
  const uid = process.getuid ? process.getuid() : 0;
  const dir = (process.env.TOURNAMENT_TEST_COLD_CACHE !== '1' && keptCache(uid)) || tmpDir('compile-cache');
  fs.chmodSync(dir, 0o755); // the sandbox's own uid must reach the plugins
  process.env.TOURNAMENT_COMPILE_CACHE = dir;
}
