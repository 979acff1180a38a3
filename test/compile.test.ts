// Compiling submissions: the baseline builds into a plugin exporting the
// runner's entry points; broken, oversized or malformed sources get a short
// clear message; a compile that does not end is stopped. The compiles use the
// precompiled libtorch header every evaluation uses (the run's compile cache
// has it, or it is made here once), and the independent ones run together.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkSubmission, compileCacheDir, compileCached, compileSubmission, CompileResult, loadPluginBuild, PluginBuild, pluginBuildPath, precompiledHeader, summarizeCompilerErrors } from '../src/harness/compile';
import { Sandbox } from '../src/harness/sandbox';
import { UserError } from '../src/errors';
import { BASELINE } from '../src/submission/source';
import { PROJECT_ROOT } from '../src/util/paths';
import { processesGoneUnder } from './helpers/processes';
import { tmpDir, removeTmpDir } from './helpers/tmp';

const HEADER = '#include <tournament/train_api.h>\nusing namespace tournament;\n';
// How long the sandbox's processes may take to die and be reaped after the
// deadline's SIGKILL, on a loaded 2-core machine: the bound on top of a time limit.
const KILL_GRACE_S = 10;
const SIGNATURE =
  'TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,\n' +
  '                        const OptimizerConfig& optimizer) {\n';

/** A hard link (the header is large), or a copy where linking is refused. */
function linkOrCopy(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch (e) {
    if (!['EXDEV', 'EPERM'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e; // another file system; or protected_hardlinks
    fs.copyFileSync(from, to);
  }
}

describe('compileSubmission', function () {
  this.timeout(300000);
  let tmp: string;
  const write = (name: string, text: string | Buffer) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const work = (name: string) => path.join(tmp, `work-${name}`);

  before(function () {
    assert.ok(fs.existsSync(pluginBuildPath()), `${pluginBuildPath()} is missing: run npm run build (npm test does)`);
    tmp = tmpDir('compile');
  });
  after(function () {
    if (tmp) removeTmpDir(tmp);
  });

  describe('refuses before compiling', function () {
    it('a missing file', async function () {
      const r = await compileSubmission(path.join(tmp, 'nope.cpp'), { workDir: work('missing') });
      assert.equal(r.ok, false);
      assert.match((r as { message: string }).message, /nope\.cpp.*no such file/);
    });

    it('a file over max_code_bytes', async function () {
      const big = write('big.cpp', HEADER + SIGNATURE + '  return {};\n}\n' + '// padding\n'.repeat(30000));
      const r = await compileSubmission(big, { workDir: work('big') });
      assert.equal(r.ok, false);
      assert.match((r as { message: string }).message, /size: \d+ bytes \(limit 262144\)/);
      const small = await compileSubmission(big, { workDir: work('big2'), maxCodeBytes: 100 });
      assert.match((small as { message: string }).message, /limit 100\)/);
    });

    it('a file that is not UTF-8 text', async function () {
      const bin = write('bin.cpp', Buffer.concat([Buffer.from(HEADER), Buffer.from([0xff, 0xfe, 0x00, 0x80])]));
      const r = await compileSubmission(bin, { workDir: work('bin') });
      assert.match((r as { message: string }).message, /not UTF-8 text/);
    });

    it('a file without #include <tournament/train_api.h>', async function () {
      const noinc = write('noinc.cpp', '#include <torch/torch.h>\n// #include <tournament/train_api.h>\nint inner_steps() { return 0; }\n');
      const r = await compileSubmission(noinc, { workDir: work('noinc') });
      assert.equal(r.ok, false);
      assert.match((r as { message: string }).message, /refused before compiling: includes tournament\/train_api\.h: add `#include <tournament\/train_api\.h>`/);
      assert.ok(!fs.existsSync(path.join(work('noinc'), 'plugin.so')));
    });
  });

  describe('compiles', function () {
    const ZERO_LIMIT_MS = 5000; // the compiler runs at full CPU until a limit stops it: a short one shows the same
    const results: Record<string, CompileResult> = {};
    let unseen: string[] = [];
    const started: Record<string, number> = {};
    before(async function () {
      const bad = write('bad.cpp', HEADER + SIGNATURE + '  TrainResult r;\n  undeclared_helper(model);\n  return r;\n}\n');
      // GCC reads /dev/zero until a limit stops it; clang takes it as empty (its size), and the template with
      // 2^40 distinct instances then runs it away.
      const bomb =
        'template <int N, unsigned long long M> struct Bomb { static constexpr unsigned long long v = Bomb<N - 1, 2 * M>::v + Bomb<N - 1, 2 * M + 1>::v; };\n' +
        'template <unsigned long long M> struct Bomb<0, M> { static constexpr unsigned long long v = M; };\n' +
        'static_assert(Bomb<40, 1>::v != 0, "runaway");\n';
      const zero = write('zero.cpp', HEADER + '#include "/dev/zero"\n' + bomb + SIGNATURE + '  return {};\n}\n');
      const build = loadPluginBuild();
      const cacheDir = compileCacheDir(work('pch'));
      const pch = await precompiledHeader(cacheDir, build, Sandbox.open());
      assert.ok(pch, 'this compiler made no precompiled header');
      // GCC's path (precompiled header and flags) as on hosts without clang, whichever compiler this build picked.
      const gcc: PluginBuild = { ...build, cxx: '/usr/bin/c++', cxx_kind: 'gcc' };
      const small = write('small.cpp', HEADER + SIGNATURE + '  return {};\n}\n');
      // The fifteenth attack pass's probe, with this run's paths: what the compiler can see is what a submission
      // can copy into its plugin's bytes (#include, .incbin). Canaries beside the compile cache's entries and in
      // the host's temp folder; the project's own files; controls that must be seen (the contract, /usr).
      const cacheCanary = path.join(cacheDir, `canary-${process.pid}.h`);
      const hostCanary = path.join(os.tmpdir(), `tournament-compile-canary-${process.pid}.h`);
      for (const f of [cacheCanary, hostCanary]) fs.writeFileSync(f, '#error the compiler read a canary\n');
      unseen = [cacheCanary, hostCanary, write('canary.h', '// beside the submission, outside its scratch copy\n')];
      unseen.push(...['package.json', '.git/HEAD', 'hparams/hparams.json', 'local_test/train.cpp', 'build/Release/plugin_build.json'].map((f) => path.join(PROJECT_ROOT, f)).filter((f) => fs.existsSync(f)));
      const probe = write(
        'probe.cpp',
        HEADER +
          '#if !__has_include(<tournament/train_api.h>) || !__has_include("/usr/include/stdio.h")\n#error the probe sees nothing\n#endif\n' +
          unseen.map((f) => `#if __has_include("${f}")\n#error FOUND ${f}\n#endif\n`).join('') +
          SIGNATURE + '  return {};\n}\n',
      );
      const jobs: Record<string, () => Promise<CompileResult>> = {
        probe: async () => {
          try {
            return await compileSubmission(probe, { workDir: work('probe'), pch });
          } finally {
            for (const f of [cacheCanary, hostCanary]) fs.rmSync(f, { force: true });
          }
        },
        gcc: async () => {
          const gccPch = await precompiledHeader(compileCacheDir(work('pch-gcc')), gcc, Sandbox.open());
          assert.ok(gccPch && fs.existsSync(`${gccPch}.gch`), 'GCC made no precompiled header');
          return compileSubmission(small, { workDir: work('gcc'), build: gcc, pch: gccPch });
        },
        baseline: () => compileSubmission(BASELINE, { workDir: work('baseline'), pch }),
        bad: () => compileSubmission(bad, { workDir: work('bad'), pch }),
        zero: () => compileSubmission(zero, { workDir: work('zero'), timeoutMs: ZERO_LIMIT_MS, pch }),
      };
      await Promise.all(
        Object.entries(jobs).map(async ([k, f]) => {
          const t0 = Date.now();
          results[k] = await f();
          started[k] = (Date.now() - t0) / 1000;
        }),
      );
    });

    it('the baseline into a plugin exporting the runner entry points', function () {
      const r = results.baseline;
      assert.ok(r.ok, (r as { message: string }).message);
      assert.equal(r.pluginPath, path.join(work('baseline'), 'plugin.so'));
      assert.ok(r.seconds > 0);
      const nm = spawnSync('nm', ['-D', '--defined-only', r.pluginPath], { encoding: 'utf8' });
      assert.equal(nm.status, 0, nm.stderr);
      assert.match(nm.stdout, / T tournament_train_api_version\n/);
      assert.match(nm.stdout, / T tournament_call_inner_steps\n/);
      // -fvisibility=hidden: inner_steps itself is not exported.
      assert.doesNotMatch(nm.stdout, /inner_steps.*Qwen2/);
    });

    it('sees none of the host\'s files but its toolchain: not the project, the compile cache, the host\'s temp folder or the source\'s folder', function () {
      assert.ok(unseen.length >= 6, unseen.join(', '));
      const r = results.probe;
      assert.ok(r.ok, (r as { message: string }).message);
    });

    it('with GCC too (its precompiled header and flags, as where clang is not installed)', function () {
      const r = results.gcc;
      assert.ok(r.ok, (r as { message: string }).message);
      const nm = spawnSync('nm', ['-D', '--defined-only', r.pluginPath], { encoding: 'utf8' });
      assert.match(nm.stdout, / T tournament_call_inner_steps\n/);
      const comment = spawnSync('readelf', ['-p', '.comment', r.pluginPath], { encoding: 'utf8' });
      assert.match(comment.stdout, /GCC/);
      assert.doesNotMatch(comment.stdout, /clang/);
    });

    it('a syntax error: the first error, with its line, named as the submission', function () {
      const r = results.bad;
      assert.equal(r.ok, false);
      const msg = (r as { message: string }).message;
      const first = msg.split('\n')[1].trim();
      assert.match(first, /bad\.cpp:6:\d+: error: .*undeclared_helper/);
      assert.doesNotMatch(msg, new RegExp(work('bad')), 'the scratch dir leaks into the message');
      assert.ok(msg.split('\n').length <= 7, msg);
    });

    it('a runaway compile (#include "/dev/zero", a template of 2^40 instances) is stopped by the memory or time limit', function () {
      const r = results.zero;
      assert.equal(r.ok, false);
      assert.match((r as { message: string }).message, /memory limit|longer than the limit/);
      const bound = ZERO_LIMIT_MS / 1000 + KILL_GRACE_S;
      assert.ok(started.zero < bound, `stopped only after ${started.zero} s: the ${ZERO_LIMIT_MS / 1000} s limit plus ${KILL_GRACE_S} s to reap is ${bound} s`);
    });
  });

  it('a compile past timeoutMs is killed, sandbox and all', async function () {
    const dir = work('timeout');
    const t0 = Date.now();
    const r = await compileSubmission(BASELINE, { workDir: dir, timeoutMs: 1500 });
    const took = (Date.now() - t0) / 1000;
    assert.equal(r.ok, false);
    assert.match((r as { message: string }).message, /compiling took longer than the limit of 1\.5 s and was stopped/);
    assert.ok(took < 1.5 + KILL_GRACE_S, `stopped only after ${took} s: the 1.5 s limit plus ${KILL_GRACE_S} s to reap is ${1.5 + KILL_GRACE_S} s`);
    // the kernel reaps a killed PID namespace asynchronously: wait for it, bounded
    assert.deepEqual(await processesGoneUnder(dir, KILL_GRACE_S * 1000), [], `compiler processes still alive ${KILL_GRACE_S} s after the kill`);
  });

  describe('the compile cache', function () {
    const source = (file: string) => {
      const c = checkSubmission(file);
      assert.ok(c.ok);
      return c.source;
    };

    it('compiles the same bytes once: the second compile is the first one\'s plugin', async function () {
      const cacheDir = compileCacheDir(work('cache'));
      const first = await compileCached(source(BASELINE), { cacheDir });
      assert.ok(first.ok, (first as { message: string }).message);
      // The same bytes under another name: the plugin depends on the bytes alone.
      const again = await compileCached(source(write('renamed.cpp', fs.readFileSync(BASELINE))), { cacheDir });
      assert.ok(again.ok);
      assert.equal(again.cached, true);
      assert.equal(again.pluginPath, first.pluginPath);
      assert.ok(fs.existsSync(first.pluginPath));
    });

    it('keeps nothing of a compile that failed', async function () {
      // A cache of its own, so that nothing else writes it meanwhile (the run's shared one is filled in the
      // background: test/helpers/prewarm.ts), with the run's precompiled header linked in (made once per run).
      const shared = await precompiledHeader(compileCacheDir(work('pch')), loadPluginBuild(), Sandbox.open());
      assert.ok(shared, 'this compiler made no precompiled header');
      const cacheDir = work('cache-failed');
      const pchDir = path.join(cacheDir, path.basename(path.dirname(shared)));
      fs.mkdirSync(pchDir, { recursive: true });
      for (const f of fs.readdirSync(path.dirname(shared))) linkOrCopy(path.join(path.dirname(shared), f), path.join(pchDir, f));
      const before = fs.readdirSync(cacheDir).sort();
      const bad = write('bad-cached.cpp', HEADER + '#include <undeclared_here.h>\n' + SIGNATURE + '  return {};\n}\n'); // fails at once
      const r = await compileCached(source(bad), { cacheDir });
      assert.equal(r.ok, false);
      assert.match((r as { message: string }).message, /undeclared_here/);
      assert.deepEqual(fs.readdirSync(cacheDir).sort(), before, 'an entry or a scratch folder was left');
    });

    it('refuses a cache folder anyone can write, before compiling', async function () {
      const cacheDir = work('cache-open');
      fs.mkdirSync(cacheDir);
      fs.chmodSync(cacheDir, 0o777);
      await assert.rejects(compileCached(source(BASELINE), { cacheDir }), (e: unknown) => e instanceof UserError && /not safe/.test(e.message));
      assert.deepEqual(fs.readdirSync(cacheDir), []);
    });
  });

  it('error summaries keep at most five errors and count the rest', function () {
    const stderr = [
      '/w/x/train.cpp: In function foo:',
      ...Array.from({ length: 8 }, (_, i) => `/w/x/train.cpp:${i + 1}:1: error: e${i}`),
      '/usr/include/a.h:3:1: error: in a header',
    ].join('\n');
    const lines = summarizeCompilerErrors(stderr, 'train.cpp', 'local_test/train.cpp', '/w/x');
    assert.deepEqual(lines, [
      'local_test/train.cpp:1:1: error: e0',
      'local_test/train.cpp:2:1: error: e1',
      'local_test/train.cpp:3:1: error: e2',
      'local_test/train.cpp:4:1: error: e3',
      'local_test/train.cpp:5:1: error: e4',
      '(4 more errors)',
    ]);
  });
});
