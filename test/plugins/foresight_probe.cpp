// Control for "no residue, no foresight": trains exactly as the baseline, and
// on the way looks for what it must not find. It fails its own run (a crash
// naming what it saw) when
//   - at dlopen (static initialisers, before READY), the batch region holds
//     anything but zeros, or the logits or trajectory region anything but
//     NaN: residue of an earlier run (the reference's trajectory holds its
//     weights after every step);
//   - at the timed call, the run's initial weights equal what the parameter
//     memory held at dlopen or during warmup, or any timed batch row was in the
//     batch region at dlopen or during warmup: foresight of the timed run.
// CPU only (the regions are memfds it can map itself).
// expect: pass
#include <tournament/train_api.h>

#include <sys/mman.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
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

struct Snapshot {
  std::vector<char> params, data, logits, trajectory;
  static Snapshot take() { return {copy_fd(4), copy_fd(5), copy_fd(6), copy_fd(8)}; }
};

const Snapshot at_load = Snapshot::take();
Snapshot at_warmup;
int calls = 0;

std::string residue_at_load() {
  for (char c : at_load.data) {
    if (c != 0) return "the batch region held data at dlopen";
  }
  auto all_nan = [](const std::vector<char>& region) {  // bf16
    for (size_t i = 0; i + 2 <= region.size(); i += 2) {
      uint16_t bits;
      std::memcpy(&bits, region.data() + i, 2);
      if (!((bits & 0x7f80) == 0x7f80 && (bits & 0x007f) != 0)) return false;
    }
    return true;
  };
  if (!all_nan(at_load.logits)) return "the logits region held numbers at dlopen";
  if (distributed().rank == 0) {  // the trajectory is rank 0's only
    if (at_load.trajectory.empty()) return "the trajectory region (fd 8) could not be read at dlopen";
    if (!all_nan(at_load.trajectory)) return "the trajectory region held numbers at dlopen";
  }
  return "";
}

bool contains_row(const std::vector<char>& region, const char* row, size_t row_bytes) {
  for (size_t at = 0; at + row_bytes <= region.size(); at += row_bytes) {
    if (std::memcmp(region.data() + at, row, row_bytes) == 0) return true;
  }
  return false;
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  const bool timed = ++calls == 2;
  if (!timed) {
    const auto why = residue_at_load();
    if (!why.empty()) throw std::runtime_error("residue: " + why);
  }
  std::vector<torch::Tensor> batches;
  torch::Tensor b;
  while (static_cast<int64_t>(batches.size()) < num_steps && data.next(&b)) batches.push_back(b);
  if (timed) {
    const auto now = copy_fd(4);
    if (now == at_load.params) throw std::runtime_error("foresight: the timed initial weights were in memory at dlopen");
    if (now == at_warmup.params) throw std::runtime_error("foresight: the timed initial weights were in memory during warmup");
    for (const auto& batch : batches) {
      auto rows = batch.to(torch::kCPU).contiguous();
      const size_t row_bytes = static_cast<size_t>(rows.size(1)) * sizeof(int64_t);
      for (int64_t r = 0; r < rows.size(0); ++r) {
        const char* row = static_cast<const char*>(rows[r].data_ptr());
        if (contains_row(at_load.data, row, row_bytes)) throw std::runtime_error("foresight: a timed row was in the batch region at dlopen");
        if (contains_row(at_warmup.data, row, row_bytes)) throw std::runtime_error("foresight: a timed row was in the batch region during warmup");
      }
    }
  } else {
    at_warmup = Snapshot::take();
  }

  // The baseline, on the batches taken above.
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  for (size_t step = 0; step < batches.size(); ++step) {
    const auto& batch = batches[step];
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step + 1 == batches.size()) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
