// The sandbox every piece of miner code runs in (the compiler on a submission,
// the runner with its plugin): bubblewrap with every namespace unshared, a
// read-only view of only what the job needs, one writable scratch directory,
// a clean environment and resource limits applied inside.
//
// What the sandbox sees (everything else of the host is absent, not merely
// read-only):
//   read-only  /usr (and /bin /lib /lib64 /sbin as on the host: symlinks into
//              /usr or binds), the dynamic loader's files in /etc
//              (ld.so.cache, ld.so.conf, ld.so.conf.d), /etc/alternatives,
//              /etc/passwd, /etc/group; the project directory minus HIDDEN_PROJECT_PATHS; every
//              readOnlyBinds path; /sys only when `cuda`.
//   writable   scratchDir (same path inside), a private /tmp (tmpfs).
//   devices    a minimal /dev (null, zero, full, random, urandom, tty, shm);
//              with `cuda`, /dev/nvidiactl, /dev/nvidia<N>, /dev/nvidia-uvm,
//              /dev/nvidia-uvm-tools and /dev/nvidia-caps where they exist.
//   hidden     $HOME, /root, /home, the host's /tmp, /run and /var (sockets of
//              host daemons live there: a read-only mount does not stop
//              connect() on a UNIX socket), /etc/shadow and the rest of /etc,
//              /opt, /srv, /mnt, /media; inside the project: benchmark/ (the
//              validator's data, including the probe batch), .env (R2 keys),
//              .local_commitments/ and .git/. An absent host path stays absent.
//   namespaces user, PID (own init; killing bwrap kills everything inside),
//              network (only a loopback of its own: no route anywhere), IPC,
//              UTS, cgroup. No capabilities, no new user namespaces inside.
//   limits     prlimit (util-linux) sets RLIMIT_CORE=0 always, and on request
//              RLIMIT_AS (never with `cuda`: CUDA reserves huge virtual
//              ranges), RLIMIT_NPROC (only as SANDBOX_UID), RLIMIT_CPU, RLIMIT_FSIZE.
//   user       a root caller's sandbox runs as SANDBOX_UID (setpriv switches
//              before bwrap starts), because the kernel exempts host uid 0
//              from RLIMIT_NPROC. It stays root only where that uid cannot
//              read what is bound or bwrap fails unprivileged; sandboxUser()
//              says which and why.
//
// File descriptors the caller leaves open without FD_CLOEXEC (Node: the
// `stdio` array of child_process.spawn) reach the command with the same
// numbers: the runner gets its control socket and memory that way.
//
// TOURNAMENT_BWRAP overrides which bwrap binary runs (e.g. Debian's, unpacked
// with `dpkg -x` on a host without the package).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../errors';
import { PROJECT_ROOT } from '../util/paths';

export interface SandboxOptions {
  /** argv of the program to run inside (argv[0] absolute, or found on the sandbox's PATH). */
  command: string[];
  /** The one writable directory, bound at the same path; the command starts there. */
  scratchDir: string;
  /** Extra host paths visible read-only, at the same path (e.g. a libtorch outside /usr). */
  readOnlyBinds?: string[];
  /** Pass the NVIDIA devices through and leave the address space unlimited. */
  cuda?: boolean;
  /** The whole environment inside (PATH and HOME get defaults when absent). */
  env?: Record<string, string>;
  /** RLIMIT_AS in bytes; ignored when `cuda`. */
  memoryBytes?: number;
  /**
   * RLIMIT_NPROC: processes and threads. The kernel counts every process of
   * the uid on the host, so it is set only when the sandbox has a uid of its
   * own (a root caller's SANDBOX_UID): for anyone else it would count their
   * desktop too.
   */
  maxProcesses?: number;
  /** RLIMIT_CPU in seconds of CPU time (all threads together); SIGXCPU then SIGKILL. */
  cpuSeconds?: number;
  /** RLIMIT_FSIZE: largest file the command may write. */
  fileBytes?: number;
  /** Extra bubblewrap options, placed first (e.g. --info-fd N). */
  bwrapArgs?: string[];
  /** Overrides the project directory that is bound (default: this checkout). */
  projectDir?: string;
}

/** The unprivileged host uid/gid for `uid` (nobody on Debian). */
export const SANDBOX_UID = 65534;

/** Paths under the project directory the sandbox never sees. */
export const HIDDEN_PROJECT_PATHS = ['benchmark', '.env', '.local_commitments', '.git'];

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
const PRLIMIT = '/usr/bin/prlimit';
const SETPRIV = '/usr/bin/setpriv';

/** The bwrap binary: $TOURNAMENT_BWRAP, else the first `bwrap` on PATH. */
export function bwrapPath(): string {
  const override = process.env.TOURNAMENT_BWRAP;
  if (override) return override;
  for (const dir of (process.env.PATH ?? DEFAULT_PATH).split(':')) {
    if (!dir) continue;
    const p = path.join(dir, 'bwrap');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return 'bwrap';
}

function lexists(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch {
    return undefined;
  }
}

/** Top-level system directories: a symlink stays a symlink (merged /usr), a directory is bound. */
function systemBinds(): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const top of ['/bin', '/sbin', '/lib', '/lib64', '/lib32', '/libx32']) {
    const st = lexists(top);
    if (!st) continue;
    if (st.isSymbolicLink()) args.push('--symlink', fs.readlinkSync(top), top);
    else if (st.isDirectory()) args.push('--ro-bind', top, top);
  }
  for (const etc of ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives', '/etc/passwd', '/etc/group']) {
    if (lexists(etc)) args.push('--ro-bind', etc, etc);
  }
  return args;
}

/** The NVIDIA device nodes present on this host. */
export function nvidiaDevices(): string[] {
  let names: string[];
  try {
    names = fs.readdirSync('/dev');
  } catch {
    return [];
  }
  return names
    .filter((n) => /^nvidia(ctl|\d+|-uvm|-uvm-tools|-caps)$/.test(n))
    .sort()
    .map((n) => `/dev/${n}`);
}

function resourceLimits(o: SandboxOptions, ownUid: boolean): string[] {
  const lim = ['--core=0'];
  const positive = (name: string, v: number | undefined) => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v <= 0) throw new Error(`sandbox: ${name} must be a positive integer, got ${v}`);
    return v;
  };
  const as = positive('memoryBytes', o.memoryBytes);
  const nproc = positive('maxProcesses', o.maxProcesses);
  const cpu = positive('cpuSeconds', o.cpuSeconds);
  const fsize = positive('fileBytes', o.fileBytes);
  if (as !== undefined && !o.cuda) lim.push(`--as=${as}`);
  if (nproc !== undefined && ownUid) lim.push(`--nproc=${nproc}`);
  if (cpu !== undefined) lim.push(`--cpu=${cpu}`);
  if (fsize !== undefined) lim.push(`--fsize=${fsize}`);
  return [PRLIMIT, ...lim, '--'];
}

/** Why sandboxes of this process stay root although the paths allow the switch (set by checkSandbox). */
let unprivilegedFails: string | undefined;

/** Whether `p` can be read (and, if a directory, entered) by a uid that owns nothing on the way to it. */
function othersCanRead(p: string, write = false): boolean {
  try {
    const real = fs.realpathSync(p);
    const st = fs.statSync(real);
    const need = (st.isDirectory() ? 0o005 : 0o004) | (write ? 0o002 : 0);
    if ((st.mode & need) !== need) return false;
    for (let dir = path.dirname(real); ; dir = path.dirname(dir)) {
      if (!(fs.statSync(dir).mode & 0o001)) return false;
      if (dir === path.dirname(dir)) return true;
    }
  } catch {
    return false;
  }
}

/**
 * The host uid this sandbox runs as, and why it stays root when it does: a
 * root caller switches to SANDBOX_UID unless that uid could not read a bound
 * path (or enter the scratch directory's parent, or use a GPU device node), or
 * bwrap does not work unprivileged on this host.
 */
export function sandboxUser(o: Omit<SandboxOptions, 'command'>): { uid: number; rootBecause?: string } {
  const me = process.getuid?.() ?? 0;
  if (me !== 0) return { uid: me };
  if (unprivilegedFails) return { uid: 0, rootBecause: unprivilegedFails };
  const bwrap = bwrapPath();
  const readable = [
    path.resolve(o.projectDir ?? PROJECT_ROOT),
    path.dirname(path.resolve(o.scratchDir)),
    ...(o.readOnlyBinds ?? []),
    ...(path.isAbsolute(bwrap) ? [bwrap] : []),
  ];
  // The GPU's device nodes; /dev/nvidia-caps matters only for MIG slices.
  const devices = o.cuda ? nvidiaDevices().filter((d) => d !== '/dev/nvidia-caps') : [];
  const blocked = readable.find((p) => !othersCanRead(p)) ?? devices.find((d) => !othersCanRead(d, true));
  if (blocked) return { uid: 0, rootBecause: `uid ${SANDBOX_UID} cannot ${blocked.startsWith('/dev/') ? 'use' : 'read'} ${blocked}` };
  return { uid: SANDBOX_UID };
}

/**
 * The full argv that runs `o.command` in the sandbox: bwrap, behind setpriv
 * when sandboxUser() switches uid (then scratchDir is chowned to that uid).
 */
export function sandboxArgv(o: SandboxOptions): string[] {
  if (o.command.length === 0) throw new Error('sandbox: empty command');
  const scratch = path.resolve(o.scratchDir);
  const project = path.resolve(o.projectDir ?? PROJECT_ROOT);
  const { uid } = sandboxUser(o);
  const dropTo = uid !== (process.getuid?.() ?? 0) ? uid : undefined;
  if (dropTo !== undefined) fs.chownSync(scratch, dropTo, dropTo);
  const args: string[] = [
    ...(dropTo !== undefined ? [SETPRIV, `--reuid=${dropTo}`, `--regid=${dropTo}`, '--clear-groups', '--'] : []),
    bwrapPath(),
    ...(o.bwrapArgs ?? []),
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--cap-drop', 'ALL',
    '--die-with-parent',
    '--new-session',
    '--hostname', 'sandbox',
    ...systemBinds(),
    '--dev', '/dev',
    '--proc', '/proc',
    '--tmpfs', '/tmp',
  ];
  if (o.cuda) {
    for (const dev of nvidiaDevices()) args.push('--dev-bind', dev, dev);
    args.push('--ro-bind', '/sys', '/sys');
  }
  args.push('--ro-bind', project, project);
  for (const rel of HIDDEN_PROJECT_PATHS) {
    const p = path.join(project, rel);
    const st = lexists(p);
    if (!st) continue;
    if (st.isDirectory()) args.push('--tmpfs', p);
    else args.push('--ro-bind', '/dev/null', p);
  }
  for (const p of o.readOnlyBinds ?? []) args.push('--ro-bind', path.resolve(p), path.resolve(p));
  args.push('--bind', scratch, scratch, '--chdir', scratch);
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: scratch, ...(o.env ?? {}) };
  args.push('--clearenv');
  for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
  args.push('--', ...resourceLimits(o, dropTo !== undefined), ...o.command);
  return args;
}

let checked = false;

/**
 * Runs `true` in the sandbox once per process; throws a UserError saying how
 * to fix the host when it fails. When it fails only as SANDBOX_UID, later
 * sandboxes stay root and sandboxUser() says why.
 */
export function checkSandbox(): void {
  if (checked) return;
  const bwrap = bwrapPath();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tournament-sandbox-check-'));
  try {
    const attempt = () => {
      const argv = sandboxArgv({ command: ['/bin/true'], scratchDir: scratch, maxProcesses: 64 });
      return spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 30000 });
    };
    let r = attempt();
    if ((r.error || r.status !== 0) && sandboxUser({ scratchDir: scratch }).uid === SANDBOX_UID) {
      const why = (r.stderr ?? r.error?.message ?? '').trim().split('\n').pop();
      unprivilegedFails = `bwrap fails as uid ${SANDBOX_UID} here (${why || `exit status ${r.status}`})`;
      r = attempt();
    }
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UserError(`bubblewrap (${bwrap}) is not installed: miner code runs only inside its sandbox`, {
        hint:
          'install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or point ' +
          'TOURNAMENT_BWRAP at a bwrap binary (e.g. unpacked from the Debian package with `dpkg -x`). ' +
          'prlimit (util-linux) must be at /usr/bin/prlimit.',
      });
    }
    if (r.error || r.status !== 0) {
      const why = (r.error?.message ?? r.stderr ?? '').trim().split('\n').slice(-3).join('; ') || `exit status ${r.status}, signal ${r.signal}`;
      throw new UserError(`the sandbox does not work on this host: ${bwrap} failed: ${why}`, {
        hint:
          'bubblewrap needs unprivileged user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), ' +
          'sysctl -w user.max_user_namespaces=15000, and on Ubuntu 24.04+ ' +
          'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile for bwrap); ' +
          'in a container, run it with --privileged or a seccomp profile that allows unshare/clone with namespaces.',
      });
    }
    checked = true;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
