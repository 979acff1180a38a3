// Compiling a submission into the plugin the runner loads. The checks that
// need no compiler come first (the same ones `miner test` reports); then the
// source is copied into the work directory and compiled there inside the
// sandbox (no network, read-only system, a time and memory limit), with
// pinned flags against the headers and libtorch of this build, as recorded by
// CMake in build/Release/plugin_build.json. Nothing is linked: the plugin's
// undefined symbols resolve against the runner, which links
// libtournament_core and libtorch.
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { loadHparams } from '../config/hparams';
import { readJsonFile } from '../util/json';
import { PROJECT_ROOT } from '../util/paths';
import { checkSource, SourceFile } from '../submission/source';
import { Sandbox, SANDBOX_SPAWN_ENV } from './sandbox';

/** `cached`: the plugin was already in the compile cache, made by an earlier compile of the same bytes (`seconds` 0). */
export type CompileResult = { ok: true; pluginPath: string; seconds: number; cached?: boolean } | { ok: false; message: string };

export interface CompileOptions {
  /** The sandbox's scratch directory: created if missing; holds the source copy and plugin.so. */
  workDir: string;
  /** Wall-clock limit for the compiler (default 300 s). */
  timeoutMs?: number;
  /** Size limit in bytes (default: hparams max_code_bytes). */
  maxCodeBytes?: number;
  /** The build to compile against (default: loadPluginBuild()). */
  build?: PluginBuild;
  /** The sandbox to compile in (default: one opened for this compile). */
  sandbox?: Sandbox;
  /** A precompiled libtorch header (precompiledHeader()): the same code, 3.5x (GCC) to 5x (clang) faster to compile. */
  pch?: string;
}

/** What CMake recorded about this build (CMakeLists.txt, last block). */
export interface PluginBuild {
  cxx: string;
  /** Which compiler family `cxx` is: its precompiled-header and diagnostic flags (absent in older builds: gcc). */
  cxx_kind?: 'gcc' | 'clang';
  cxx_flags: string[];
  include_dirs: string[];
  torch_version: string;
  cuda: boolean;
}

/** The flags every plugin is compiled with, before the build's own. */
export const PINNED_FLAGS = ['-std=c++17', '-O2', '-fPIC', '-shared', '-fvisibility=hidden'];
const DIAGNOSTIC_FLAGS = {
  gcc: ['-fdiagnostics-color=never', '-fno-diagnostics-show-caret', '-fmax-errors=20'],
  clang: ['-fdiagnostics-color=never', '-fno-caret-diagnostics', '-ferror-limit=20'],
};
// The compiler's own default search dirs: naming them again with -isystem breaks #include_next.
const DEFAULT_INCLUDE_DIRS = new Set(['/usr/include', '/usr/local/include']);
const DEFAULT_TIMEOUT_MS = 300_000;
const MEMORY_BYTES = 8 * 2 ** 30;
const OUTPUT_BYTES = 2 ** 30;
const MAX_ERRORS_SHOWN = 5;
const STDERR_KEEP = 256 * 1024;

export function pluginBuildPath(): string {
  return path.join(PROJECT_ROOT, 'build', 'Release', 'plugin_build.json');
}

/** Reads build/Release/plugin_build.json, or says to build the engine. */
export function loadPluginBuild(): PluginBuild {
  const file = pluginBuildPath();
  const b = readJsonFile<PluginBuild>(file, 'run `npm run build` again');
  if (!b) {
    throw new UserError(`${file} is missing: the native engine is not built (or was built before plugins were supported)`, {
      hint: 'run `npm run build` (needs cmake, a C++17 compiler and libtorch: apt-get install build-essential cmake libtorch-dev)',
    });
  }
  if (typeof b.cxx !== 'string' || !Array.isArray(b.cxx_flags) || !Array.isArray(b.include_dirs)) {
    throw new UserError(`${file} is malformed`, { hint: 'run `npm run build` again' });
  }
  return b;
}

/** The flags that decide the generated code: a precompiled header must be made with exactly these. */
function codeFlags(build: PluginBuild): string[] {
  const includes = build.include_dirs.filter((d) => !DEFAULT_INCLUDE_DIRS.has(path.resolve(d))).flatMap((d) => ['-isystem', d]);
  return [...PINNED_FLAGS.filter((f) => f !== '-shared'), ...build.cxx_flags, ...includes];
}

const kind = (build: PluginBuild) => build.cxx_kind ?? 'gcc';

/** The compiler's argv, run in the work directory on `source` (a bare file name there). */
export function compilerArgv(build: PluginBuild, source: string, output: string, pch?: string): string[] {
  const usePch = !pch ? [] : kind(build) === 'clang' ? ['-include-pch', pchFile(build, pch)] : ['-include', pch, '-Winvalid-pch'];
  return [build.cxx, '-shared', ...codeFlags(build), ...usePch, ...DIAGNOSTIC_FLAGS[kind(build)], '-o', output, source];
}

const PCH_HEADER = 'tournament_pch.h';
/** The contract's headers (native/include): in every plugin's cache key, and clang's precompiled header is made from them in place. */
const CONTRACT_INCLUDE_DIR = path.join(PROJECT_ROOT, 'native', 'include');

/** The precompiled form of `header`, where each compiler looks for it. */
function pchFile(build: PluginBuild, header: string): string {
  return `${header}.${kind(build) === 'clang' ? 'pch' : 'gch'}`;
}

/**
 * A precompiled header of the part of libtorch the contract includes
 * (tournament/libtorch.h) for this build: parsing it is most of a plugin's
 * compile time (measured on the 2-core CPU machine with all of torch/torch.h:
 * 25.8 s plain, 7.3 s with it). Made once
 * per toolchain and headers, in the sandbox, under `cacheDir`; returns the
 * header to pass to compilerArgv, or undefined (and plugins compile without
 * it) when this compiler cannot make one. Only trusted headers go into it.
 */
export async function precompiledHeader(cacheDir: string, build: PluginBuild, sandbox: Sandbox): Promise<string | undefined> {
  const dir = path.join(cacheDir, `pch-${toolchainHash(build).slice(0, 16)}`);
  const header = path.join(dir, PCH_HEADER);
  const made = pchFile(build, header);
  if (fs.existsSync(made)) return header;
  // Once per process at a time (both would write the same scratch folder), and not beside another process making it.
  return once(`pch ${dir}`, async () => {
    await othersMaking(dir, made, DEFAULT_TIMEOUT_MS);
    return fs.existsSync(made) ? header : makePrecompiledHeader(dir, header, build, sandbox);
  });
}

async function makePrecompiledHeader(dir: string, header: string, build: PluginBuild, sandbox: Sandbox): Promise<string | undefined> {
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  // libtorch alone (tournament/libtorch.h holds only libtorch's headers): the contract's own header stays the submission's to include (with or without TOURNAMENT_HOST).
  let input = [PCH_HEADER];
  if (kind(build) === 'clang') {
    // Clang keeps the headers' template instantiations in its precompiled header (GCC redoes them in every
    // plugin). It records its input files by path: so the contract's header itself (at the same path in every
    // sandbox), not a scratch copy; and no timestamps, since the cache key already covers the headers' bytes.
    input = ['-fpch-instantiate-templates', '-Xclang', '-fno-pch-timestamp', path.join(CONTRACT_INCLUDE_DIR, 'tournament', 'libtorch.h')];
  } else {
    fs.writeFileSync(path.join(tmp, PCH_HEADER), '// libtorch, precompiled for this build (src/harness/compile.ts).\n#include <tournament/libtorch.h>\n');
  }
  const job = {
    command: [build.cxx, ...codeFlags(build), '-x', 'c++-header', ...input, '-o', pchFile(build, PCH_HEADER)],
    scratchDir: tmp,
    readOnlyBinds: toolchainBinds(build),
    env: { LANG: 'C', LC_ALL: 'C' },
    memoryBytes: MEMORY_BYTES,
    cpuSeconds: DEFAULT_TIMEOUT_MS / 1000,
    fileBytes: 4 * OUTPUT_BYTES,
    maxProcesses: 256,
  };
  sandbox.prepareScratch(job);
  const exit = await runWithDeadline(sandbox.argv(job), DEFAULT_TIMEOUT_MS);
  if (exit.code !== 0 || !fs.existsSync(path.join(tmp, pchFile(build, PCH_HEADER)))) {
    fs.rmSync(tmp, { recursive: true, force: true });
    return undefined;
  }
  settle(tmp, dir);
  return header;
}

/**
 * What decides a plugin's bytes besides its source: the build (compiler,
 * flags, libtorch), the pinned flags and every contract header.
 */
function toolchainHash(build: PluginBuild): string {
  const hash = crypto.createHash('sha256').update(JSON.stringify(build)).update(JSON.stringify(codeFlags(build)));
  for (const f of listFiles(CONTRACT_INCLUDE_DIR)) hash.update(f).update(fs.readFileSync(f));
  return hash.digest('hex');
}

/**
 * Moves a finished `tmp` into place as `dir`. Entries are content-addressed, so
 * one that another process put there first is the same: keep it (a runner may
 * be using it) and drop ours.
 */
function settle(tmp: string, dir: string): void {
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    if (!['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Waits while another live process makes the entry `dir` (its scratch folder
 * `${dir}.tmp-<pid>` exists) and `done` is not there yet, up to `timeoutMs`:
 * two processes sharing a cache (the test suite and the CLIs it starts, a
 * `miner test` beside a `local-bench`) then compile the same bytes once.
 * A process that dies leaves its folder behind: it no longer counts.
 */
async function othersMaking(dir: string, done: string, timeoutMs: number): Promise<void> {
  const prefix = `${path.basename(dir)}.tmp-`;
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM'; // someone else's, but alive
    }
  };
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(done) && Date.now() < deadline) {
    let names: string[];
    try {
      names = fs.readdirSync(path.dirname(dir));
    } catch {
      return;
    }
    const pids = names.filter((n) => n.startsWith(prefix)).map((n) => Number(n.slice(prefix.length)));
    if (!pids.some((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function listFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .sort();
}

/**
 * Host directories outside /usr that compiling or running a plugin needs:
 * the compiler's whole prefix (its internal headers and libstdc++ live beside
 * bin/), libtorch's install (for a pip PyTorch, the whole site-packages,
 * where its CUDA libraries are too) and the project's public headers.
 */
export function toolchainBinds(build: PluginBuild): string[] {
  const outside = (p: string) => !(p === '/usr' || p.startsWith('/usr/'));
  const dirs: string[] = [];
  const cxxDir = path.dirname(fs.realpathSync(build.cxx));
  dirs.push(path.basename(cxxDir) === 'bin' ? path.dirname(cxxDir) : cxxDir);
  for (const d of build.include_dirs) {
    const k = d.indexOf('/site-packages/');
    dirs.push(k >= 0 ? d.slice(0, k + '/site-packages'.length) : d);
  }
  return [...new Set(dirs.map((d) => path.resolve(d)))].filter((d) => outside(d) && fs.existsSync(d));
}

/**
 * The first few `error:` lines of the compiler's output, with the work
 * directory's copy named as the user named the submission.
 */
export function summarizeCompilerErrors(stderr: string, copyName: string, displayName: string, workDir: string): string[] {
  const lines = stderr.split('\n').map((l) => l.split(workDir + path.sep).join(''));
  const errors = lines.filter((l) => /\berror:/.test(l));
  const shown = errors.slice(0, MAX_ERRORS_SHOWN).map((l) => (l.startsWith(copyName + ':') ? displayName + l.slice(copyName.length) : l));
  if (errors.length > shown.length) shown.push(`(${errors.length - shown.length} more error${errors.length - shown.length === 1 ? '' : 's'})`);
  return shown;
}

function displayPath(sourcePath: string): string {
  const rel = path.relative(process.cwd(), path.resolve(sourcePath));
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : sourcePath;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
}

/** Runs argv, keeping the head of stderr, killing the whole sandbox at the deadline. */
function runWithDeadline(argv: string[], timeoutMs: number): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...SANDBOX_SPAWN_ENV } });
    let stderr = '';
    let timedOut = false;
    const keep = (chunk: Buffer) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL'); // bwrap is the sandbox's PID namespace parent: everything inside dies with it
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, timedOut });
    });
  });
}

/** The submission read once and checked (the checks `miner test` reports), or why it is refused before compiling. */
export function checkSubmission(sourcePath: string, maxCodeBytes?: number): { ok: true; source: SourceFile } | { ok: false; message: string } {
  const maxBytes = maxCodeBytes ?? loadHparams(path.join(PROJECT_ROOT, 'hparams', 'hparams.json')).max_code_bytes;
  const { checks, source } = checkSource(sourcePath, maxBytes);
  const failed = checks.filter((c) => !c.ok);
  if (failed.length || !source) {
    return { ok: false, message: `${displayPath(sourcePath)} refused before compiling: ${failed.map((c) => `${c.name}: ${c.detail}`).join('; ')}` };
  }
  return { ok: true, source };
}

/** Refuses or compiles `sourcePath` into `<workDir>/plugin.so`. */
export async function compileSubmission(sourcePath: string, opts: CompileOptions): Promise<CompileResult> {
  const checked = checkSubmission(sourcePath, opts.maxCodeBytes);
  return checked.ok ? compileChecked(checked.source, opts) : checked;
}

/** Compiles a source that passed checkSubmission into `<workDir>/plugin.so`. */
export async function compileChecked(source: SourceFile, opts: CompileOptions): Promise<CompileResult> {
  const sourcePath = source.path;
  const display = displayPath(sourcePath);
  const build = opts.build ?? loadPluginBuild();
  const sandbox = opts.sandbox ?? Sandbox.open();
  const workDir = path.resolve(opts.workDir);
  fs.mkdirSync(workDir, { recursive: true });
  // One name for every copy: the plugin (__FILE__ included) then depends on the bytes alone, as the compile cache's key does;
  // the compiler's messages name the file as the user named it (summarizeCompilerErrors).
  const copyName = 'train.cpp';
  const pluginName = 'plugin.so';
  fs.writeFileSync(path.join(workDir, copyName), source.bytes);
  fs.rmSync(path.join(workDir, pluginName), { force: true });

  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const job = {
    command: compilerArgv(build, copyName, pluginName, opts.pch),
    scratchDir: workDir,
    readOnlyBinds: [...toolchainBinds(build), ...(opts.pch ? [path.dirname(opts.pch)] : [])],
    env: { LANG: 'C', LC_ALL: 'C' },
    memoryBytes: MEMORY_BYTES,
    cpuSeconds: Math.ceil(timeoutMs / 1000) + 5,
    fileBytes: OUTPUT_BYTES,
    maxProcesses: 256,
  };
  sandbox.prepareScratch(job);
  const argv = sandbox.argv(job);
  const t0 = process.hrtime.bigint();
  const exit = await runWithDeadline(argv, timeoutMs);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;

  if (exit.timedOut) {
    return { ok: false, message: `${display}: compiling took longer than the limit of ${(timeoutMs / 1000).toFixed(1)} s and was stopped` };
  }
  const pluginPath = path.join(workDir, pluginName);
  if (exit.code === 0 && fs.existsSync(pluginPath)) return { ok: true, pluginPath, seconds };

  const errors = summarizeCompilerErrors(exit.stderr, copyName, display, workDir);
  if (errors.length) return { ok: false, message: `${display} does not compile:\n${errors.map((l) => `  ${l}`).join('\n')}` };
  const how = exit.signal
    ? `the compiler was killed by ${exit.signal}${exit.signal === 'SIGXCPU' ? ' (CPU time limit)' : ''}`
    : `the compiler exited with status ${exit.code}`;
  const tail = exit.stderr.trim().split('\n').slice(-3).join('\n  ');
  const oom = /virtual memory exhausted|out of memory|cannot allocate/i.test(exit.stderr) ? ' (memory limit)' : '';
  return { ok: false, message: `${display} does not compile: ${how}${oom}${tail ? `:\n  ${tail}` : ''}` };
}

/**
 * The compile cache to use: $TOURNAMENT_COMPILE_CACHE when set (the test
 * suite points every process at one, so the header and each plugin are made
 * once per run), else `fallback`.
 */
export function compileCacheDir(fallback: string): string {
  return path.resolve(process.env.TOURNAMENT_COMPILE_CACHE || fallback);
}

/**
 * Refuses a cache folder someone else could write: a plugin found there is
 * loaded by the runner as if we had compiled it. The folder and every folder
 * above it must be ours or root's and not writable by every user (a sticky
 * /tmp is fine: nobody else can rename what we own in it). Group write is
 * allowed: with per-user groups, umask 002 makes every new folder so.
 */
function checkCacheOwner(cacheDir: string): void {
  const me = process.getuid?.();
  if (me === undefined) return;
  for (let d = cacheDir; ; d = path.dirname(d)) {
    const st = fs.statSync(d);
    const sticky = (st.mode & 0o1000) !== 0;
    if ((st.uid !== me && st.uid !== 0) || (st.mode & 0o002 && (d === cacheDir || !sticky))) {
      throw new UserError(`the compile cache ${cacheDir} is not safe: ${d} is not owned by uid ${me} or root, or anyone can write it`, {
        hint: 'point it at a folder only you can write (TOURNAMENT_COMPILE_CACHE, --work-dir or the data folder)',
      });
    }
    if (d === path.dirname(d)) return;
  }
}

const inFlight = new Map<string, Promise<unknown>>();

/** `job()`, started once per `key` while it runs: callers asking for the same key meanwhile share its promise. */
function once<T>(key: string, job: () => Promise<T>): Promise<T> {
  const pending = inFlight.get(key);
  if (pending) return pending as Promise<T>;
  const p = job().finally(() => inFlight.delete(key));
  inFlight.set(key, p);
  return p;
}

export interface CachedCompileOptions {
  /** Folder of the cache: the precompiled header and one folder per plugin, by content; created if missing. */
  cacheDir: string;
  build?: PluginBuild;
  sandbox?: Sandbox;
  timeoutMs?: number;
}

/**
 * compileChecked through a content-addressed cache: the plugin lives in
 * `cacheDir/<sha256 of source and toolchain>/plugin.so`, compiled there once,
 * in the sandbox, with the cache's precompiled header, and reused by every
 * later compile of the same bytes (an evaluation's baseline, a resumed
 * evaluation, `miner test` then `local-bench`). Only a successful sandboxed
 * compile ever makes an entry, and no sandbox can write the cache: the
 * compiler's scratch is a fresh folder beside the entries, the runner binds
 * its plugin's folder read-only.
 */
export async function compileCached(source: SourceFile, opts: CachedCompileOptions): Promise<CompileResult> {
  const build = opts.build ?? loadPluginBuild();
  const sandbox = opts.sandbox ?? Sandbox.open();
  const cacheDir = path.resolve(opts.cacheDir);
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
  checkCacheOwner(cacheDir);
  const pch = await precompiledHeader(cacheDir, build, sandbox);
  const key = crypto.createHash('sha256').update(toolchainHash(build)).update(pch ? 'pch' : 'plain').update(source.sha256).digest('hex').slice(0, 32);
  const dir = path.join(cacheDir, key);
  const plugin = path.join(dir, 'plugin.so');
  if (fs.existsSync(plugin)) return { ok: true, pluginPath: plugin, seconds: 0, cached: true };
  return once(`plugin ${dir}`, async (): Promise<CompileResult> => {
    await othersMaking(dir, plugin, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    if (fs.existsSync(plugin)) return { ok: true, pluginPath: plugin, seconds: 0, cached: true };
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    const r = await compileChecked(source, { workDir: tmp, build, sandbox, pch, timeoutMs: opts.timeoutMs });
    if (!r.ok) {
      fs.rmSync(tmp, { recursive: true, force: true });
      return r;
    }
    settle(tmp, dir);
    return { ok: true, pluginPath: plugin, seconds: r.seconds };
  });
}
