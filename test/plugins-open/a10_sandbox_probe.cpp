// Attack pass 10, sandbox probe (a leak hunt, not a cheat): trains exactly as
// the baseline, and at three moments (static initialiser = dlopen, the warmup
// call, the timed call) writes what it can see to stderr (the runner's log in
// its scratch folder; copied out from OUTSIDE the sandbox by the tester while
// the run lasts, a channel the validator does not have) and to the failure
// text: its ids and capabilities, seccomp, its environment, every process it
// sees (environment, command line, open file descriptors, whether their
// memory is readable), its own descriptors (what they are, sizes, for the
// shared regions the first bytes: zero/NaN scrub or not), its mounts, /tmp,
// /dev/shm, the scratch and plugin folders, SysV IPC, abstract unix sockets,
// the host's load and uptime, and the timing of the shared-memory regions.
// RESULTS (this 2-core CPU, run as root, 2026-12-04): `bin/tournament
// local-bench test/plugins-open/a10_sandbox_probe.cpp --runs 1 --seed 10100
// --json` ACCEPTED (it trains as the baseline); the log was copied out of
// /tmp/tournament-0/run-*/runner.log by a loop outside while the run lasted.
// What the plugin sees, at dlopen, warmup and the timed call alike:
//   uid/euid 65534, no capabilities (CapEff/CapBnd 0), NoNewPrivs 1, no
//   seccomp filter; environment PATH, HOME and PWD (the scratch folder) only;
//   two processes: PID 1 bwrap (its command line is the bind list; its
//   environment PATH only; its /proc/1/mem OPENS for reading: same uid;
//   its fds 0-2 and 9, an eventfd; fd 7 the info fd) and PID 2 the runner;
//   the runner's fds 0 (/dev/null), 1-2 (runner.log), 3 (the control
//   socket), 4-6 (memfds: parameters 1,789,952 B, batches 81,920 B, logits
//   8,323,072 B); mounts: /usr, a few /etc files, the build folder
//   (build/Release: the runner, the engine library, tournament.node,
//   plugin_build.json, the native tests), native/include, the plugin's own
//   cache entry, the scratch folder, private /tmp, /dev basics, /proc;
//   empty /dev/shm, no SysV shm, no unix sockets (own net namespace);
//   /proc/loadavg and /proc/uptime are the host's.
//   The regions: at dlopen the parameters hold warmup's start (all but 1,408
//   halfwords non-zero: the zero biases and the 896-halfword tail), the
//   batch region is all zero, the logits region all NaN; at warmup the
//   batch region holds warmup's 2 batches; the timed start and batches only
//   appear at GO. Nothing of the reference's run, another submission, the
//   validator's environment or the timed run before GO was readable.
//   Only host facts leak (load average, uptime, /usr's contents).
// expect: pass
#include <tournament/train_api.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace tournament;

namespace {

std::string slurp(const std::string& path, size_t cap = 4096) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "<unreadable>";
  std::string out(cap, '\0');
  f.read(&out[0], static_cast<std::streamsize>(cap));
  out.resize(static_cast<size_t>(f.gcount()));
  for (auto& c : out)
    if (c == '\0') c = ' ';
  return out;
}

std::vector<std::string> list(const std::string& dir) {
  std::vector<std::string> v;
  DIR* d = opendir(dir.c_str());
  if (!d) return {"<unlistable>"};
  while (auto* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") v.push_back(n);
  }
  closedir(d);
  return v;
}

std::string link(const std::string& p) {
  char buf[512];
  ssize_t n = readlink(p.c_str(), buf, sizeof buf - 1);
  if (n < 0) return "<?>";
  buf[n] = 0;
  return buf;
}

void probe(const char* when) {
  std::ostringstream o;
  o << "=== PROBE " << when << " pid=" << getpid() << " uid=" << getuid() << " euid=" << geteuid() << "\n";
  std::string st = slurp("/proc/self/status", 8192);
  std::istringstream ss(st);
  std::string line;
  while (std::getline(ss, line))
    if (line.rfind("Cap", 0) == 0 || line.rfind("Seccomp", 0) == 0 || line.rfind("NoNewPrivs", 0) == 0 ||
        line.rfind("Groups", 0) == 0)
      o << "  " << line << "\n";
  o << "-- environ: " << slurp("/proc/self/environ") << "\n";
  for (auto& pid : list("/proc")) {
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    o << "-- proc " << pid << " cmd=[" << slurp("/proc/" + pid + "/cmdline", 400) << "] env=["
      << slurp("/proc/" + pid + "/environ", 400) << "]\n";
    for (auto& fd : list("/proc/" + pid + "/fd")) o << "     fd " << fd << " -> " << link("/proc/" + pid + "/fd/" + fd) << "\n";
    int mem = open(("/proc/" + pid + "/mem").c_str(), O_RDONLY);
    o << "     mem open: " << (mem >= 0 ? "YES" : strerror(errno)) << "\n";
    if (mem >= 0) close(mem);
  }
  for (auto& fd : list("/proc/self/fd")) {
    int f = std::atoi(fd.c_str());
    struct stat sb {};
    fstat(f, &sb);
    o << "-- my fd " << fd << " -> " << link("/proc/self/fd/" + fd) << " size=" << sb.st_size << " mode=" << std::oct
      << sb.st_mode << std::dec << " flags=" << slurp("/proc/self/fdinfo/" + fd, 200) << "\n";
    if (S_ISREG(sb.st_mode) && sb.st_size > 0 && link("/proc/self/fd/" + fd).find("memfd") != std::string::npos) {
      // How much of the region is zero / NaN / other (first 64 MiB).
      size_t n = std::min<size_t>(sb.st_size, 64u << 20);
      void* p = mmap(nullptr, n, PROT_READ, MAP_SHARED, f, 0);
      if (p != MAP_FAILED) {
        const uint16_t* h = static_cast<const uint16_t*>(p);
        size_t zero = 0, nanv = 0, other = 0;
        for (size_t i = 0; i < n / 2; ++i) {
          if (h[i] == 0) ++zero;
          else if ((h[i] & 0x7f80) == 0x7f80 && (h[i] & 0x7f)) ++nanv;
          else ++other;
        }
        o << "     region halfwords: zero=" << zero << " nan=" << nanv << " other=" << other << "\n";
        munmap(p, n);
      }
    }
  }
  o << "-- mountinfo:\n" << slurp("/proc/self/mountinfo", 8192) << "\n";
  for (std::string d : {"/", "/tmp", "/dev/shm", "/dev", ".", "/run", "/var/tmp", "/home", "/root", "/proc/sysvipc"}) {
    o << "-- ls " << d << ":";
    for (auto& n : list(d)) o << " " << n;
    o << "\n";
  }
  o << "-- sysvipc shm: " << slurp("/proc/sysvipc/shm", 1000) << "\n";
  o << "-- net unix: " << slurp("/proc/net/unix", 2000) << "\n";
  o << "-- maps (files): ";
  {
    std::istringstream ms(slurp("/proc/self/maps", 1 << 20));
    std::string prev;
    while (std::getline(ms, line)) {
      auto pos = line.find('/');
      if (pos == std::string::npos) continue;
      std::string f = line.substr(pos);
      if (f != prev) o << f << " | ";
      prev = f;
    }
  }
  o << "\n-- loadavg: " << slurp("/proc/loadavg") << " uptime: " << slurp("/proc/uptime") << "\n";
  o << "-- cgroup: " << slurp("/proc/self/cgroup") << "\n";
  o << "-- limits: " << slurp("/proc/self/limits", 2000) << "\n";
  std::fprintf(stderr, "%s", o.str().c_str());
  std::fflush(stderr);
}

struct AtLoad {
  AtLoad() { probe("dlopen"); }
} at_load;

int calls = 0;

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  probe(calls == 0 ? "warmup" : "timed");
  ++calls;
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) TORCH_CHECK(data.next(&batches[step]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    auto hidden = model->hidden_states(batch);
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batch, logits);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits;
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  // Give the tester's watcher time to copy the log out of the scratch folder.
  if (calls == 2) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  return result;
}
