// Attack (hang the validator): like log_symlink_read, the plugin replaces its
// log, scratch/runner.log, at dlopen; here with a FIFO, and fails its run on
// purpose. The trusted side then opens the log path to quote its tail
// (evaluator.cpp, log_tail: ::open(path, O_RDONLY), blocking, no O_NONBLOCK,
// no O_NOFOLLOW, no check of the file type) after the sandbox is gone: the
// open of a FIFO with no writer blocks forever, in the validator's own
// process, outside every runner time limit. No verdict ever comes; every
// later evaluation waits behind it. (A symlink to any other FIFO or blocking
// device the validator can open does the same.) Fixed when the log is read
// from the fd created before the spawn, or opened O_NOFOLLOW | O_NONBLOCK
// and checked to be a regular file: then the run just fails.
// Measured (CPU tiny, local-bench --runs 1): after the run failed and its
// sandbox was gone, the Node process sat in fifo_open / wait_for_partner
// (kernel stack of its thread) on scratch/runner.log (a FIFO owned by
// nobody) for minutes, until killed from outside (timeout -s KILL 240).
// expect: crash
#include <tournament/train_api.h>

#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

using namespace tournament;

namespace {
struct Plant {
  Plant() {
    ::unlink("runner.log");  // the cwd is the scratch folder
    ::mkfifo("runner.log", 0644);
  }
} plant;
}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  throw std::runtime_error("failing on purpose so that the validator opens runner.log");
}
