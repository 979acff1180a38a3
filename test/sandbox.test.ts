// The sandbox holds: nothing written outside the scratch directory reaches the
// host, no network, no host processes, hidden host files stay hidden, passed
// file descriptors arrive, limits apply, and killing bwrap kills everything
// inside.
import { strict as assert } from 'assert';
import { spawn, spawnSync, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { PROJECT_ROOT } from '../src/util/paths';
import { checkSandbox, sandboxArgv, SandboxOptions, sandboxUser, SANDBOX_UID } from '../src/harness/sandbox';

const TAG = `tournament-sandbox-test-${process.pid}-${Date.now()}`;

function runIn(o: Omit<SandboxOptions, 'command'>, script: string, extra: { stdio?: Array<'ignore' | 'pipe' | number> } = {}) {
  const argv = sandboxArgv({ ...o, command: ['/bin/bash', '-c', script] });
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 60000, stdio: extra.stdio as never });
  return { status: r.status, signal: r.signal, out: (r.stdout ?? '').trim(), err: (r.stderr ?? '').trim() };
}

describe('sandbox (bubblewrap)', function () {
  this.timeout(60000);
  let scratch: string;
  const cleanup: string[] = [];

  before(function () {
    checkSandbox();
  });
  beforeEach(function () {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-'));
    cleanup.push(scratch);
  });
  after(function () {
    for (const p of cleanup) fs.rmSync(p, { recursive: true, force: true });
  });

  it('runs the command in the scratch directory with a clean environment', function () {
    process.env.TOURNAMENT_SANDBOX_LEAK = 'secret';
    try {
      const r = runIn({ scratchDir: scratch, env: { FOO: 'bar' } }, 'pwd; echo "$FOO"; env | sort | tr "\\n" " "');
      assert.equal(r.status, 0, r.err);
      const [pwd, foo, env] = r.out.split('\n');
      assert.equal(pwd, scratch);
      assert.equal(foo, 'bar');
      assert.doesNotMatch(env, /TOURNAMENT_SANDBOX_LEAK/);
    } finally {
      delete process.env.TOURNAMENT_SANDBOX_LEAK;
    }
  });

  it('writes land in scratchDir only; the project, $HOME and the host /tmp stay untouched', function () {
    const targets = [
      path.join(PROJECT_ROOT, `${TAG}.txt`),
      path.join(os.homedir(), `${TAG}.txt`),
      path.join('/tmp', `${TAG}.txt`),
      path.join('/usr', `${TAG}.txt`),
      path.join(path.dirname(scratch), `${TAG}-sibling.txt`),
    ];
    const script = [...targets.map((t) => `echo x > ${t} 2>/dev/null && echo "wrote ${t}"`), 'echo ok > inside.txt', 'true'].join('; ');
    const r = runIn({ scratchDir: scratch }, script);
    for (const t of targets) {
      cleanup.push(t);
      assert.ok(!fs.existsSync(t), `${t} exists on the host`);
    }
    // Only /tmp (a private tmpfs) accepts writes, and they vanish with the sandbox.
    assert.deepEqual(r.out.split('\n').filter((l) => l.startsWith('wrote') && !l.startsWith('wrote /tmp/')), []);
    assert.equal(fs.readFileSync(path.join(scratch, 'inside.txt'), 'utf8'), 'ok\n');
  });

  it('cannot connect to a loopback server on the host', async function () {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as net.AddressInfo).port;
    try {
      // Sanity: the same probe outside the sandbox does connect.
      const outside = spawnSync('/bin/bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port} && echo connected`], { encoding: 'utf8' });
      assert.match(outside.stdout, /connected/);
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(connections, 1);
      const r = runIn({ scratchDir: scratch }, `exec 3<>/dev/tcp/127.0.0.1/${port} && echo connected || echo refused`);
      assert.equal(r.out, 'refused');
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(connections, 1, 'the sandbox reached the host server');
    } finally {
      server.close();
    }
  });

  it('cannot see host processes', async function () {
    const marker = `${(process.pid % 1000) + 1000}.${Date.now() % 100000}`;
    const child: ChildProcess = spawn('sleep', [marker], { stdio: 'ignore' });
    try {
      const r = runIn({ scratchDir: scratch }, 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "; echo; ls /proc | grep -c "^[0-9]"');
      assert.equal(r.status, 0, r.err);
      assert.ok(!r.out.includes(marker), 'a host process is visible');
      const count = Number(r.out.split('\n').pop());
      assert.ok(count > 0 && count < 8, `${count} processes visible`);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('hides $HOME, /root, the host /tmp, the project benchmark/ and .env', function () {
    // A fake project with the secrets, so the real checkout is not touched.
    const proj = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-project-'));
    cleanup.push(proj);
    fs.writeFileSync(path.join(proj, 'package.json'), '{}');
    fs.mkdirSync(path.join(proj, 'benchmark'));
    fs.writeFileSync(path.join(proj, 'benchmark', 'probe.bin'), 'probe');
    fs.writeFileSync(path.join(proj, '.env'), 'R2_SECRET=1');
    fs.writeFileSync(path.join(proj, 'visible.txt'), 'yes');
    const homeFile = path.join(os.homedir(), `.${TAG}`);
    const tmpFile = path.join('/tmp', `${TAG}.secret`);
    fs.writeFileSync(homeFile, 'home secret');
    fs.writeFileSync(tmpFile, 'tmp secret');
    cleanup.push(homeFile, tmpFile);
    const hidden = [homeFile, tmpFile, path.join(proj, 'benchmark', 'probe.bin'), path.join(proj, '.env'), '/etc/shadow', '/root/.bashrc'];
    const script = [...hidden.map((h) => `cat ${h} 2>/dev/null | head -c 1 | grep -q . && echo "read ${h}"`), `cat ${proj}/visible.txt`].join('; ');
    fs.chmodSync(proj, 0o755); // readable by the sandbox's uid when it is not root
    const r = runIn({ scratchDir: scratch, projectDir: proj }, script);
    assert.equal(r.out, 'yes', `visible inside: ${r.out}`);
  });

  it('hides the real checkout benchmark/ too', function () {
    const bench = path.join(PROJECT_ROOT, 'benchmark');
    if (!fs.existsSync(bench)) {
      console.log(`    skipped: ${bench} does not exist (run \`tournament setup-benchmark --preset tiny\` to test that it is hidden)`);
      this.skip();
    }
    const r = runIn({ scratchDir: scratch }, `ls -A ${bench} | wc -l; ls ${PROJECT_ROOT}/package.json`);
    assert.equal(r.out.split('\n')[0], '0');
  });

  it('passes an inherited file descriptor through', function () {
    const f = path.join(scratch, '..', `${path.basename(scratch)}-fd.txt`);
    fs.writeFileSync(f, 'through the fd');
    cleanup.push(f);
    const fd = fs.openSync(f, 'r');
    try {
      const r = runIn({ scratchDir: scratch }, 'cat <&3', { stdio: ['ignore', 'pipe', 'pipe', fd] });
      assert.equal(r.out, 'through the fd');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('applies RLIMIT_AS, CPU and core limits, and leaves RLIMIT_AS alone with cuda', function () {
    const r = runIn({ scratchDir: scratch, memoryBytes: 1 << 30, cpuSeconds: 7 }, 'ulimit -v; ulimit -t; ulimit -c');
    assert.deepEqual(r.out.split('\n'), [String((1 << 30) / 1024), '7', '0']);
    const c = runIn({ scratchDir: scratch, memoryBytes: 1 << 30, cuda: true }, 'ulimit -v');
    assert.equal(c.out, 'unlimited');
  });

  it('an allocation beyond memoryBytes fails inside', function () {
    // 256 MiB limit, 512 MiB wanted: the shell's allocation fails, the host is unaffected.
    const r = runIn({ scratchDir: scratch, memoryBytes: 256 << 20 }, 'x=$(head -c 536870912 /dev/zero | tr "\\0" a); echo ${#x}');
    assert.notEqual(r.out, '536870912');
  });

  it('as root, runs as SANDBOX_UID, so maxProcesses limits forking', function () {
    const user = sandboxUser({ scratchDir: scratch });
    if (user.uid !== SANDBOX_UID) {
      console.log(`    skipped: the sandbox runs as uid ${user.uid} here${user.rootBecause ? ` (${user.rootBecause})` : ''}`);
      this.skip();
    }
    const r = runIn(
      { scratchDir: scratch, maxProcesses: 16 },
      'n=0; for i in $(seq 40); do (sleep 3) 2>/dev/null & done 2>/dev/null; ls /proc | grep -c "^[0-9]"; id -u; touch mine',
    );
    const [count, uid] = r.out.split('\n').slice(-2).map(Number);
    assert.ok(count <= 16, `${count} processes`);
    assert.equal(uid, SANDBOX_UID);
    assert.equal(fs.statSync(path.join(scratch, 'mine')).uid, SANDBOX_UID);
  });

  it('killing bwrap kills everything inside, including background processes', async function () {
    const argv = sandboxArgv({
      scratchDir: scratch,
      command: ['/bin/bash', '-c', '(setsid bash -c "while true; do date +%s%N >> beat; sleep 0.05; done" &) ; sleep 1000'],
    });
    const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
    const beat = path.join(scratch, 'beat');
    for (let i = 0; i < 100 && !(fs.existsSync(beat) && fs.statSync(beat).size > 0); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(fs.existsSync(beat), 'the background writer never started');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 200));
    const size = fs.statSync(beat).size;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(fs.statSync(beat).size, size, 'something inside kept writing after bwrap was killed');
  });
});
