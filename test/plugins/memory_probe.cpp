// Measurement, not an attack: how much device memory the harness leaves to a
// submission. On CUDA, at the start of the timed call (the second call: run
// it with warmup; warmup returns at once, so nothing of it stays cached), it
// allocates (and touches) 1 GiB blocks until an allocation fails, then fails
// on purpose with a message that names the count, so it shows in the
// verdict's reasons:
//   memory_probe: 86 x 1 GiB at the start of the call; cudaMemGetInfo free 87.3 of 139.8 GiB
// scripts/gpu-perf.sh reads that line.
// On the CPU (the adversarial suite) it does not probe: it trains as the
// baseline does and must pass.
// expect: pass
#include <tournament/train_api.h>

#include <cstdio>
#include <string>
#include <vector>

using namespace tournament;

// The CUDA runtime's, resolved against the runner's libraries when it has CUDA; null otherwise.
extern "C" int cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) __attribute__((weak));

static std::string probe(torch::Device device) {
  constexpr int64_t kGiB = int64_t(1) << 30;
  size_t free_bytes = 0, total_bytes = 0;
  const bool have_info = cudaMemGetInfo && cudaMemGetInfo(&free_bytes, &total_bytes) == 0;
  std::vector<torch::Tensor> blocks;
  for (;;) {
    try {
      auto t = torch::empty({kGiB}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
      t.fill_(1);  // touch it
      blocks.push_back(t);
    } catch (const c10::Error&) {
      break;
    }
  }
  const size_t count = blocks.size();
  blocks.clear();
  char line[256];
  std::snprintf(line, sizeof line, "memory_probe: %zu x 1 GiB at the start of the call; cudaMemGetInfo free %.1f of %.1f GiB",
                count, have_info ? free_bytes / double(kGiB) : -1.0, have_info ? total_bytes / double(kGiB) : -1.0);
  return line;
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  static int calls = 0;
  if (device.is_cuda()) {
    // Warmup (the first call) returns at once: nothing of it stays allocated
    // or cached. The timed call (the second) probes and fails with the count.
    // Without warmup the first call is the timed one: it returns no logits,
    // the run fails for that, and the count is in the runner's stderr only.
    if (++calls == 1) {
      std::fprintf(stderr, "memory_probe: call 1 (%lld steps): no probe, returning\n", static_cast<long long>(num_steps));
      return TrainResult();
    }
    const std::string line = probe(device);
    std::fprintf(stderr, "%s (call %d, %lld steps)\n", line.c_str(), calls, static_cast<long long>(num_steps));
    TORCH_CHECK(false, line);
  }
  // The CPU: the baseline's loop.
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
