// tournament-step-profile: times submission plugins side by side in one
// process on one GPU, outside the sandbox, on a randomly initialised
// Qwen2.5-7B shape, and optionally records one call under the PyTorch
// (Kineto) profiler. A measuring tool for issue 13, not part of the harness.
//
//   tournament-step-profile [--steps 5] [--batch 16] [--seq 1024] [--repeat 2]
//                           [--trace OUT.json] [--check-kernels] PLUGIN.so...
// Each plugin: one warmup call of 1 step, then `repeat` timed calls of `steps`
// steps (synchronised host clock around the call; the weights are
// re-initialised before each), printed as tokens/s with the final loss, the
// final weights' loss on a held-out probe batch and the logits' relative error
// against the first plugin's (same initialisation, same Zipf-distributed data);
// plugins interleave over the repeats so drift hits all alike. --trace
// records one more call of 2 steps of the last plugin. --check-kernels compares tournament/kernels.h's
// fused CUDA kernels with the same ops on the CPU first.
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <tournament/kernels.h>

#include "../src/batches.h"

#if __has_include(<torch/csrc/autograd/profiler_kineto.h>) && !defined(NO_KINETO)
#include <torch/csrc/autograd/profiler_kineto.h>
#define HAVE_KINETO 1
#endif

using namespace tournament;
using Clock = std::chrono::steady_clock;
using CallFn = void (*)(Qwen2ForCausalLM*, DataIterator*, int64_t, const torch::Device*, const OptimizerConfig*,
                        TrainResult*);

namespace {

void device_sync() { torch::cuda::synchronize(); }

// ulp-level comparison of a CUDA result with a CPU one: max |diff| / max |ref| and the share of elements that differ.
void report(const char* what, const torch::Tensor& got, const torch::Tensor& ref) {
  auto g = got.to(torch::kCPU, torch::kFloat32), r = ref.to(torch::kCPU, torch::kFloat32);
  const double rel = ((g - r).abs().max() / r.abs().max().clamp_min(1e-30)).item<double>();
  const double neq = (g != r).to(torch::kFloat32).mean().item<double>();
  const double rel_norm = ((g - r).norm() / r.norm().clamp_min(1e-30)).item<double>();
  std::printf("  %-28s max|d|/max|ref| %.3e  ||d||/||ref|| %.3e  differing %.4f%%\n", what, rel, rel_norm, 100 * neq);
}

void check_kernels() {
  std::printf("kernels: fused_available=%d\n", kernels::fused_available());
  const int64_t B = 2, S = 256, T = B * S, H = 3584, I = 18944 / 4, Nq = 28, Nkv = 4, D = 128;
  auto cu = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  auto rnd = [&](std::vector<int64_t> shape, double scale = 1.0) { return (torch::randn(shape, cu.dtype(torch::kFloat32)) * scale).to(torch::kBFloat16); };
  auto cpu = [](const torch::Tensor& t) { return t.to(torch::kCPU); };
  // RMSNorm with residual, forward and backward
  auto x = rnd({T, H}), r = rnd({T, H}), w = rnd({H}, 0.5) + 1, g = rnd({T, H}, 0.01), dres = rnd({T, H}, 0.01);
  torch::Tensor rs_g, rs_r, s_g, s_r, dw_g, dw_r;
  auto y_g = kernels::rms_norm(x, w, 1e-6, &rs_g, r, &s_g);
  auto y_r = kernels::rms_norm(cpu(x), cpu(w), 1e-6, &rs_r, cpu(r), &s_r);
  report("rms_norm sum", s_g, s_r);
  report("rms_norm y", y_g, y_r);
  report("rms_norm rstd", rs_g, rs_r);
  auto dx_g = kernels::rms_norm_backward(g, s_g, w, rs_g, &dw_g, dres);
  auto dx_r = kernels::rms_norm_backward(cpu(g), s_r, cpu(w), rs_r, &dw_r, cpu(dres));
  report("rms_norm_backward dx", dx_g, dx_r);
  report("rms_norm_backward dw", dw_g, dw_r);
  // SwiGLU
  auto gate = rnd({T, I}, 2), up = rnd({T, I}), dp = rnd({T, I}, 0.01);
  report("swiglu", kernels::swiglu(gate, up), kernels::swiglu(cpu(gate), cpu(up)));
  auto dp_r = cpu(dp), gate_r = cpu(gate), up_r = cpu(up);
  auto dp_g = dp.clone(), gate_g = gate.clone(), up_g = up.clone();
  kernels::swiglu_backward_(dp_g, gate_g, up_g);
  kernels::swiglu_backward_(dp_r, gate_r, up_r);
  report("swiglu_backward prod", dp_g, dp_r);
  report("swiglu_backward d_gate", gate_g, gate_r);
  report("swiglu_backward d_up", up_g, up_r);
  // Rotary on a fused q/k/v product, and its backward from strided gradients
  auto [cos, sin] = [&] {
    auto pos = torch::arange(S, cu.dtype(torch::kFloat32)).unsqueeze(1);
    auto inv = torch::pow(1e6, -torch::arange(0, D, 2, cu.dtype(torch::kFloat32)) / D);
    auto e = torch::cat({pos * inv, pos * inv}, 1);
    return std::make_pair(e.cos().to(torch::kBFloat16), e.sin().to(torch::kBFloat16));
  }();
  auto qkv = rnd({T, (Nq + 2 * Nkv) * D});
  auto qkv_g = qkv.clone(), qkv_r = cpu(qkv);
  kernels::rope_qkv_(qkv_g, cos, sin, S, Nq, Nkv, D);
  kernels::rope_qkv_(qkv_r, cpu(cos), cpu(sin), S, Nq, Nkv, D);
  report("rope_qkv_", qkv_g, qkv_r);
  auto dq = rnd({B, Nq, S, D}).transpose(1, 2), dk = rnd({B, Nkv, S, D}).transpose(1, 2), dv = rnd({B, S, Nkv, D});
  report("rope_qkv_backward", kernels::rope_qkv_backward(dq, dk, dv, cos, sin),
         kernels::rope_qkv_backward(cpu(dq), cpu(dk), cpu(dv), cpu(cos), cpu(sin)));
  // Cross entropy's gradient in place, and the rows' log-probabilities
  {
    const int64_t n = 64, V = 152064;
    auto logits = rnd({n, V}, 3);
    auto t = torch::randint(0, V, {n}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kInt64));
    auto lg = logits.clone(), lr = cpu(logits);
    auto pg = torch::empty({n}, cu.dtype(torch::kFloat32)), pr = torch::empty({n}, torch::kFloat32);
    kernels::cross_entropy_grad_(lg, t, 1.0 / 16368, pg);
    kernels::cross_entropy_grad_(lr, cpu(t), 1.0 / 16368, pr);
    report("cross_entropy_grad_ grad", lg, lr);
    report("cross_entropy_grad_ logp", pg, pr);
  }
  // The float32 sum of stacked bf16 terms (the loss head's chunk products), rounded once
  {
    auto terms = rnd({8, 1000, 72});
    report("sum_terms", kernels::sum_terms(terms), kernels::sum_terms(cpu(terms)));
  }
  // AdamW's first step from moments it must not read (NaN here) against the step from zeroed ones, both on the GPU
  {
    auto p0 = rnd({1000, 72}), g0 = rnd({1000, 72}, 0.01);
    auto pa = p0.clone(), pb = p0.clone();
    auto ma = torch::full_like(p0, NAN), va = torch::full_like(p0, NAN), mb = torch::zeros_like(p0), vb = torch::zeros_like(p0);
    kernels::adamw_first_step_(pa, g0, ma, va, 1e-4, 0.9, 0.95, 0.1, 1e-8);
    kernels::adamw_step_(pb, g0, mb, vb, 1, 1e-4, 0.9, 0.95, 0.1, 1e-8);
    report("adamw_first_step_ p", pa, pb);
    report("adamw_first_step_ m", ma, mb);
    report("adamw_first_step_ v", va, vb);
  }
  // Poisoned-output check: every element written (NaN-filled inputs would propagate; here, finite outputs)
  std::printf("  all finite: %d\n", static_cast<int>(torch::isfinite(kernels::swiglu(gate, up)).all().item<bool>() &&
                                                     torch::isfinite(y_g).all().item<bool>()));
}

}  // namespace

// The plugins' view of their rank (train_api.h): one rank of one, no group, as
// the runner hands a one-GPU evaluation. The runner defines it for its
// plugins; without it here a plugin that links against it (the baseline,
// local_test/train.cpp) failed to load: undefined symbol
// _ZN10tournament11distributedEv (2026-12-04 04:04 UTC).
const Distributed& tournament::distributed() {
  static const Distributed one;
  return one;
}

int main(int argc, char** argv) {
  int64_t steps = 5, batch = 16, seq = 1024, repeat = 1;
  std::string trace;
  bool check = false;
  std::vector<std::string> plugins;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps") steps = std::stoll(argv[++i]);
    else if (a == "--batch") batch = std::stoll(argv[++i]);
    else if (a == "--seq") seq = std::stoll(argv[++i]);
    else if (a == "--repeat") repeat = std::stoll(argv[++i]);
    else if (a == "--trace") trace = argv[++i];
    else if (a == "--check-kernels") check = true;
    else plugins.push_back(a);
  }
  if (check) check_kernels();
  if (plugins.empty()) return 0;

  Qwen2Config cfg;  // Qwen2.5-7B
  cfg.vocab_size = 152064;
  cfg.hidden_size = 3584;
  cfg.intermediate_size = 18944;
  cfg.num_hidden_layers = 28;
  cfg.num_attention_heads = 28;
  cfg.num_key_value_heads = 4;
  cfg.max_position_embeddings = 32768;
  const torch::Device device(torch::kCUDA, 0);
  Qwen2ForCausalLM model(cfg, device_allocator(torch::TensorOptions().device(device).dtype(torch::kBFloat16)));
  model->train();
  init_weights(model, 1234);
  // Token ids as the benchmark's synthetic data draws them (Zipf, s = 1: id k with weight 1 / (k + 1)), where
  // training moves the model (uniform ids barely do, and hide differences between plugins); the last 4 rows
  // are a held-out probe, as the harness's probe loss.
  auto zipf = 1.0 / torch::arange(1, cfg.vocab_size + 1, torch::kFloat64);
  auto tokens = torch::multinomial(zipf, batch * (steps + 1) * seq + 4 * seq, /*replacement=*/true)
                    .view({-1, seq});  // [rows, S] int64
  auto probe = tokens.narrow(0, tokens.size(0) - 4, 4).to(device);  // [4, S]
  tokens = tokens.narrow(0, 0, tokens.size(0) - 4);
  const OptimizerConfig opt;

  std::vector<CallFn> fns;
  for (const auto& p : plugins) {
    void* lib = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
    TORCH_CHECK(lib, dlerror());
    auto fn = reinterpret_cast<CallFn>(dlsym(lib, "tournament_call_inner_steps"));
    TORCH_CHECK(fn, "no entry point in ", p);
    fns.push_back(fn);
  }
  // Every call starts from the same initialisation: final losses and logits compare across plugins.
  double seconds = 0;  // of the last call, initialisation excluded
  auto call = [&](size_t i, int64_t n, int64_t first_row) {
    init_weights(model, 1234);
    model->zero_grad(true);
    TableBatches data(tokens.narrow(0, first_row, n * batch), n, batch, device);
    TrainResult out;
    device_sync();
    const auto t0 = Clock::now();
    fns[i](&model, &data, n, &device, &opt, &out);
    device_sync();
    seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
  };
  torch::Tensor ref_logits;  // the first plugin's, on the host: ||logits - ref|| / ||ref|| as the harness's check
  for (int64_t r = 0; r < repeat; ++r) {
    for (size_t i = 0; i < fns.size(); ++i) {
      if (r == 0) call(i, 1, steps * batch);  // warmup on other rows: cuDNN plans, cuBLAS handles, the allocator's pool
      auto out = call(i, steps, 0);
      const double s = seconds;
      double rel = 0;
      if (r == 0) {
        auto l = out.logits.to(torch::kCPU, torch::kFloat32);
        if (!ref_logits.defined()) ref_logits = l;
        else rel = ((l - ref_logits).norm() / ref_logits.norm()).item<double>();
      }
      double probe_loss = 0;
      {
        torch::NoGradGuard no_grad;
        probe_loss = causal_lm_loss(model->forward(probe), probe).item<double>();
      }
      std::printf("%s: %.0f tokens/s (%.3f s per step), final loss %.6f, probe loss %.4f, logits rel. error vs the first %.4f\n",
                  plugins[i].c_str(), static_cast<double>(steps * batch * seq) / s, s / steps, out.final_loss, probe_loss, rel);
      std::fflush(stdout);
    }
  }
  if (!trace.empty()) {
#ifdef HAVE_KINETO
    namespace prof = torch::autograd::profiler;
    using torch::profiler::impl::ActivityType;
    torch::profiler::impl::ProfilerConfig pc(torch::profiler::impl::ProfilerState::KINETO);
    std::set<ActivityType> acts{ActivityType::CPU, ActivityType::CUDA};
    prof::prepareProfiler(pc, acts);
    prof::enableProfiler(pc, acts);
    call(fns.size() - 1, 2, 0);  // the last plugin
    auto result = prof::disableProfiler();
    result->save(trace);
    std::printf("trace: %s\n", trace.c_str());
#else
    std::printf("trace: no Kineto headers in this build\n");
#endif
  }
  return 0;
}
