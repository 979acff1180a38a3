// Attack: allocates and touches memory in 256 MiB blocks until an allocation
// fails, aiming past the machine's total memory: the sandbox's memory limit
// must stop it with an allocation failure the runner reports as `oom`, and
// the run fails cleanly without hurting the caller. Without a limit it would
// fail with its own message instead (a crash): the suite runs it with a 4 GiB
// limit so that it ends in seconds.
// expect: oom
#include <tournament/train_api.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace tournament;

static int64_t total_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  while (f >> key >> kib) {
    if (key == "MemTotal:") return kib * 1024;
    f.ignore(1 << 10, '\n');
  }
  return int64_t(1) << 40;
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  constexpr int64_t kBlock = int64_t(256) << 20;
  const int64_t target = total_memory_bytes() + (int64_t(4) << 30);
  std::vector<torch::Tensor> hoard;
  for (int64_t held = 0; held < target; held += kBlock) {
    auto t = torch::empty({kBlock}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
    t.fill_(1);  // touch every page
    hoard.push_back(t);
  }
  TORCH_CHECK(false, "allocated ", hoard.size(), " blocks of 256 MiB without running out");
  return TrainResult();
}
