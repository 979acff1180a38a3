#include "bench.h"

#include <chrono>

#include "compat.h"

namespace tournament {

namespace {

struct PhaseResult {
  double seconds;
  int64_t served;
  TrainResult out;
};

PhaseResult run_phase(Qwen2ForCausalLM& model, InnerStepsFn step_fn, const BenchOptions& opts,
                      const torch::Tensor& tokens, const torch::Tensor& indices, const std::string& phase) {
  const auto device = model->parameters().front().device();
  const int64_t steps = indices.numel() / opts.batch_size;
  IndexedBatches data(tokens, indices.to(device), opts.batch_size, device, [&](int64_t done) {
    if (opts.progress) opts.progress(phase, done - 1, steps);
  });
  compat::cuda_synchronize(device);
  const auto t0 = std::chrono::steady_clock::now();
  TrainResult out;
  step_fn(&model, &data, steps, &device, &opts.optimizer, &out);
  compat::cuda_synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (opts.progress) opts.progress(phase, data.served(), steps);
  return {seconds, data.served(), std::move(out)};
}

}  // namespace

BatchPlan plan_batches(int64_t samples, int64_t batch, int64_t steps, int64_t warmup_steps, uint64_t seed) {
  auto gen = compat::seeded_generator(torch::kCPU, seed);
  auto perm = torch::randperm(samples, gen, torch::kInt64);  // [samples]
  const int64_t need = (steps + warmup_steps) * batch;
  if (need > samples) perm = perm.repeat({(need + samples - 1) / samples});
  return {perm.narrow(0, 0, steps * batch).clone(), perm.narrow(0, steps * batch, warmup_steps * batch).clone()};
}

BenchResult run_benchmark(Qwen2ForCausalLM& model, InnerStepsFn step_fn, const BenchOptions& opts) {
  const auto device = model->parameters().front().device();
  auto tokens = opts.tokens.to(device, torch::kInt64);  // [samples, S]
  model->train();
  const auto plan = plan_batches(tokens.size(0), opts.batch_size, opts.steps, opts.warmup_steps, opts.seed);
  BenchResult r;
  if (opts.warmup_steps > 0) {
    r.warmup_seconds = run_phase(model, step_fn, opts, tokens, plan.warmup, "warmup").seconds;
  }
  compat::cuda_reset_peak(device);
  auto timed = run_phase(model, step_fn, opts, tokens, plan.timed, "timed");
  r.timed_seconds = timed.seconds;
  r.steps = timed.served;
  r.tokens = timed.served * opts.batch_size * tokens.size(1);
  r.reported_tokens = timed.out.total_tokens;
  r.final_loss = timed.out.final_loss;
  r.peak_device_bytes = compat::cuda_peak_allocated(device);
  if (timed.out.logits.defined()) r.logits_shape = timed.out.logits.sizes().vec();
  return r;
}

}  // namespace tournament
