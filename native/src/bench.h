// The benchmark driver: owns warmup, the clock and the metrics. It knows
// nothing of how a step is done; it calls a step function (inner_steps).
#pragma once

#include "batches.h"

#include <string>

namespace tournament {

using InnerStepsFn = void (*)(Qwen2ForCausalLM*, DataIterator*, int64_t, const torch::Device*,
                              const OptimizerConfig*, TrainResult*);

// Which samples each phase trains on: one seeded permutation of the samples,
// timed batches first, warmup batches after them, so warmup never sees the
// timed data while there are enough samples (it wraps around otherwise).
struct BatchPlan {
  torch::Tensor timed;   // [steps * batch] int64
  torch::Tensor warmup;  // [warmup_steps * batch] int64
};
BatchPlan plan_batches(int64_t samples, int64_t batch, int64_t steps, int64_t warmup_steps, uint64_t seed);

struct BenchOptions {
  torch::Tensor tokens;  // [samples, seq_len] int64, any device
  int64_t batch_size = 0;
  int64_t steps = 0;
  int64_t warmup_steps = 0;
  uint64_t seed = 0;  // picks the data order
  OptimizerConfig optimizer;
  // phase ("warmup" | "timed"), steps done, steps in the phase
  std::function<void(const std::string&, int64_t, int64_t)> progress;
};

struct BenchResult {
  double warmup_seconds = 0;
  double timed_seconds = 0;
  int64_t steps = 0;
  int64_t tokens = 0;        // counted by the driver from the batches served
  int64_t reported_tokens = 0;  // what inner_steps returned
  double final_loss = 0;
  int64_t peak_device_bytes = -1;  // -1 on CPU
  std::vector<int64_t> logits_shape;
};

BenchResult run_benchmark(Qwen2ForCausalLM& model, InnerStepsFn step_fn, const BenchOptions& opts);

}  // namespace tournament
