// Cheat (the residue attack found on main, 2026-12-02): the plugin's static
// initialiser runs inside dlopen, before READY and before the trusted side
// writes anything for this run. It copies the shared parameter and logits
// memory as it finds it (on main: the reference's final weights and logits,
// left from the reference run on the same seed) and, in the timed call, writes
// them back and returns without training. Every shared region must be
// overwritten before a runner is spawned, so what it copies is worthless.
// CPU only (the regions are memfds it can map itself).
// expect: logits|probe_loss|update_error|cell_loss
#include <tournament/train_api.h>

#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>
#include <vector>

using namespace tournament;

namespace {

std::vector<char> copy_fd(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) return {};
  void* p = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return {};
  std::vector<char> out(static_cast<const char*>(p), static_cast<const char*>(p) + st.st_size);
  munmap(p, st.st_size);
  return out;
}

void write_fd(int fd, const std::vector<char>& bytes) {
  if (bytes.empty()) return;
  void* p = mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return;
  std::memcpy(p, bytes.data(), bytes.size());
  munmap(p, bytes.size());
}

// fds 4 (parameters) and 6 (logits), as the runner's start-up contract numbers them.
const std::vector<char> params_at_load = copy_fd(4);
const std::vector<char> logits_at_load = copy_fd(6);
int calls = 0;

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  (void)model;
  (void)device;
  (void)optimizer;
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps && data.next(&batch); ++step) result.total_tokens += batch.numel();
  if (++calls == 1) {  // warmup: nothing to gain
    result.logits = torch::zeros({batch.size(0), batch.size(1) - 1, model->config.vocab_size});
    return result;
  }
  write_fd(4, params_at_load);
  // The runner copies the returned logits into the trusted buffer: return the copied ones.
  const int64_t B = batch.size(0), S = batch.size(1), V = model->config.vocab_size;
  auto logits = torch::empty({B, S - 1, V}, torch::kBFloat16);
  if (logits_at_load.size() >= static_cast<size_t>(logits.numel() * 2)) {
    std::memcpy(logits.data_ptr(), logits_at_load.data(), logits.numel() * 2);
  }
  result.logits = logits;
  result.final_loss = 1.0;
  return result;
}
