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
//              /etc/passwd, /etc/group; every readOnlyBinds path (the runner's
//              build folder, the plugin's folder, the toolchain: an allow-list,
//              never the whole project); /sys only when `cuda`.
//   writable   scratchDir (same path inside), a private /tmp (tmpfs).
//   devices    a minimal /dev (null, zero, full, random, urandom, tty, shm);
//              with `cuda`, /dev/nvidiactl, /dev/nvidia<N>, /dev/nvidia-uvm,
//              /dev/nvidia-uvm-tools and /dev/nvidia-caps where they exist.
//   hidden     everything not listed above: $HOME, /root, /home, the host's
//              /tmp, /run and /var (sockets of host daemons live there: a
//              read-only mount does not stop connect() on a UNIX socket), /etc/shadow
//              and the rest of /etc, /opt, /srv, /mnt, /media, the project
//              (its benchmark/, .env, .git, .local_commitments). The secret
//              paths a Sandbox is opened with (the benchmark folder wherever it
//              is, the validator's data folder, credential files) are covered
//              again wherever they fall inside a bound path.
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
//   environment bwrap itself starts with SANDBOX_SPAWN_ENV (PATH alone): its
//              monitor process is the sandbox's PID 1 and readable through
//              /proc by the command's uid, so it must hold nothing of the
//              caller's environment. The command gets only `env`.
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

export interface SandboxJob {
  /** argv of the program to run inside (argv[0] absolute, or found on the sandbox's PATH). */
  command: string[];
  /** The one writable directory, bound at the same path; the command starts there. */
  scratchDir: string;
  /** Host paths visible read-only, at the same path: all the command may read beside the system. */
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
}

/** The unprivileged host uid/gid for `uid` (nobody on Debian). */
export const SANDBOX_UID = 65534;

/** The whole environment bwrap (and setpriv, prlimit before it) is started with. */
export const SANDBOX_SPAWN_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: '/usr/local/bin:/usr/bin:/bin' });

const DEFAULT_PATH = SANDBOX_SPAWN_ENV.PATH;
const PRLIMIT = '/usr/bin/prlimit';
const SETPRIV = '/usr/bin/setpriv';

/** The bwrap binary: $TOURNAMENT_BWRAP, else the first `bwrap` on PATH. */
export function bwrapPath(): string {
  const override = process.env.TOURNAMENT_BWRAP;
  if (override) return path.resolve(override);
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

const SYSTEM_DIRS = ['/bin', '/sbin', '/lib', '/lib64', '/lib32', '/libx32'];
const SYSTEM_ETC = ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives', '/etc/passwd', '/etc/group'];

/** Top-level system directories: a symlink stays a symlink (merged /usr), a directory is bound. */
function systemBinds(): { args: string[]; bound: string[] } {
  const args = ['--ro-bind', '/usr', '/usr'];
  const bound = ['/usr'];
  for (const top of SYSTEM_DIRS) {
    const st = lexists(top);
    if (!st) continue;
    if (st.isSymbolicLink()) args.push('--symlink', fs.readlinkSync(top), top);
    else if (st.isDirectory()) {
      args.push('--ro-bind', top, top);
      bound.push(top);
    }
  }
  for (const etc of SYSTEM_ETC) {
    if (lexists(etc)) {
      args.push('--ro-bind', etc, etc);
      bound.push(etc);
    }
  }
  return { args, bound };
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

function resourceLimits(o: SandboxJob, ownUid: boolean): string[] {
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

/** Whether `inner` is `outer` or lies below it. */
function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function real(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export interface SandboxOpenOptions {
  /**
   * Paths the command must never see (the benchmark folder, the validator's
   * data folder, credential files), wherever they are. Where one falls inside
   * a bound path it is covered (an empty directory, or /dev/null for a file);
   * a bind inside one stays visible (e.g. the plugin folder inside a data folder).
   */
  secrets?: string[];
}

/**
 * A working sandbox on this host: which bwrap runs, as which uid, and the
 * argv for each job. Open one per evaluation (or compile): opening runs
 * `true` inside once and says how to fix the host when that fails.
 */
export class Sandbox {
  private constructor(
    readonly bwrap: string,
    private readonly secrets: string[],
    /** Why sandboxes stay root on this host although the paths allow the switch. */
    private readonly unprivilegedFails: string | undefined,
  ) {}

  static open(o: SandboxOpenOptions = {}): Sandbox {
    const bwrap = bwrapPath();
    const secrets = [...new Set((o.secrets ?? []).map(real))];
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tournament-sandbox-check-'));
    fs.chmodSync(scratch, 0o755);
    try {
      const attempt = (sb: Sandbox) => {
        const job = { command: ['/bin/true'], scratchDir: scratch, maxProcesses: 64 };
        sb.prepareScratch(job);
        const argv = sb.argv(job);
        return spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 30000, env: { ...SANDBOX_SPAWN_ENV } });
      };
      let sb = new Sandbox(bwrap, secrets, undefined);
      let r = attempt(sb);
      if ((r.error || r.status !== 0) && sb.user({ scratchDir: scratch }).uid === SANDBOX_UID) {
        const why = (r.stderr ?? r.error?.message ?? '').trim().split('\n').pop();
        sb = new Sandbox(bwrap, secrets, `bwrap fails as uid ${SANDBOX_UID} here (${why || `exit status ${r.status}`})`);
        r = attempt(sb);
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
      return sb;
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }

  /**
   * The host uid a job runs as, and why it stays root when it does: a root
   * caller switches to SANDBOX_UID unless that uid could not read a bound
   * path (or enter the scratch directory's parent, or use a GPU device node),
   * or bwrap does not work unprivileged on this host.
   */
  user(o: Omit<SandboxJob, 'command'>): { uid: number; rootBecause?: string } {
    const me = process.getuid?.() ?? 0;
    if (me !== 0) return { uid: me };
    if (this.unprivilegedFails) return { uid: 0, rootBecause: this.unprivilegedFails };
    const readable = [path.dirname(path.resolve(o.scratchDir)), ...(o.readOnlyBinds ?? []), ...(path.isAbsolute(this.bwrap) ? [this.bwrap] : [])];
    // The GPU's device nodes; /dev/nvidia-caps matters only for MIG slices.
    const devices = o.cuda ? nvidiaDevices().filter((d) => d !== '/dev/nvidia-caps') : [];
    const blocked = readable.find((p) => !othersCanRead(p)) ?? devices.find((d) => !othersCanRead(d, true));
    if (blocked) return { uid: 0, rootBecause: `uid ${SANDBOX_UID} cannot ${blocked.startsWith('/dev/') ? 'use' : 'read'} ${blocked}` };
    return { uid: SANDBOX_UID };
  }

  /** Gives the scratch directory to the uid the job runs as (a root caller's SANDBOX_UID). */
  prepareScratch(o: Omit<SandboxJob, 'command'>): void {
    const { uid } = this.user(o);
    if (uid !== (process.getuid?.() ?? 0)) fs.chownSync(path.resolve(o.scratchDir), uid, uid);
  }

  /** The full argv that runs `o.command` in the sandbox: bwrap, behind setpriv when the job switches uid. Start it with SANDBOX_SPAWN_ENV. */
  argv(o: SandboxJob): string[] {
    if (o.command.length === 0) throw new Error('sandbox: empty command');
    const scratch = path.resolve(o.scratchDir);
    const { uid } = this.user(o);
    const dropTo = uid !== (process.getuid?.() ?? 0) ? uid : undefined;
    const system = systemBinds();
    const binds = (o.readOnlyBinds ?? []).map((p) => path.resolve(p));
    for (const b of [...binds, scratch]) {
      if (this.secrets.includes(real(b))) throw new Error(`sandbox: ${b} is a secret path and cannot be bound`);
    }
    const args: string[] = [
      ...(dropTo !== undefined ? [SETPRIV, `--reuid=${dropTo}`, `--regid=${dropTo}`, '--clear-groups', '--'] : []),
      this.bwrap,
      ...(o.bwrapArgs ?? []),
      '--unshare-all',
      '--unshare-user',
      '--disable-userns',
      '--cap-drop', 'ALL',
      '--die-with-parent',
      '--new-session',
      '--hostname', 'sandbox',
      ...system.args,
      '--dev', '/dev',
      '--proc', '/proc',
      '--tmpfs', '/tmp',
    ];
    if (o.cuda) {
      for (const dev of nvidiaDevices()) args.push('--dev-bind', dev, dev);
      args.push('--ro-bind', '/sys', '/sys');
    }
    for (const p of binds) args.push('--ro-bind', p, p);
    // Secrets inside a bound path are covered; binds inside a secret come back on top.
    const bound = [...system.bound, ...binds, ...(o.cuda ? ['/sys'] : [])];
    const covered: string[] = [];
    for (const s of this.secrets) {
      if (!bound.some((b) => within(s, real(b)) && s !== real(b))) continue;
      const st = lexists(s);
      if (!st) continue;
      if (st.isDirectory()) args.push('--tmpfs', s);
      else args.push('--ro-bind', '/dev/null', s);
      covered.push(s);
    }
    for (const p of binds) if (covered.some((s) => within(p, s) && p !== s)) args.push('--ro-bind', p, p);
    args.push('--bind', scratch, scratch, '--chdir', scratch);
    const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: scratch, ...(o.env ?? {}) };
    args.push('--clearenv');
    for (const [k, v] of Object.entries(env)) args.push('--setenv', k, v);
    args.push('--', ...resourceLimits(o, dropTo !== undefined), ...o.command);
    return args;
  }
}
