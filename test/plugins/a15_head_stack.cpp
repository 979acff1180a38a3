// Attack pass 15: the two loss-head cheats left open by earlier passes, stacked in one plugin.
// lm_head's WEIGHT gradient count-sketched in the last 3 steps (the tenth pass's
// test/plugins/a10_head_cv_sketch.cpp, SKETCH_DEN 2: 2.83% of the tiny run's multiply-adds)
// AND the loss head's INPUT gradient dH = dlogits W computed exactly only over the K = 256 vocabulary
// columns of largest mean probability, the tail to first order, in the last 2 steps (the twelfth
// pass's test/plugins-open/a12_head_dx_lintail.cpp: 3.9%). Each alone was accepted; the question is
// whether their errors, which land on different tensors (lm_head; every decoder layer), stay under
// every threshold together. Work skipped: about 2.8% + 3.9% = 6.7% of the tiny run's matrix
// multiply-adds (each pass's own count; on Qwen2.5-7B about 0.39% + 0.7% = 1.1%).
// RESULTS (2026-12-04, this 2-core CPU, tiny default): `bin/tournament local-bench
// test/plugins/a15_head_stack.cpp --runs 2 --seed S --work-dir /tmp/a15work --json`,
// S = 15000 and 15100: ACCEPTED 4 of 4 runs (2 of 2 evaluations). Closest checks (of the limit):
// head alignment 0.9e-4..1.5e-4 (3.1e-4, <= 0.48), cell 0.0058..0.0082 (0.018, <= 0.45), MLP kind
// 0.026..0.029 (0.075), lm_head kind 0.043..0.058 (0.16), |probe - ref| <= 5.4e-4 (0.002), layer
// positions <= 0.38 (1.0), pair energy <= 0.25 (0.5). Slower than the reference on this CPU's wall
// clock (4,825 and 7,279 tokens/s median; the skipped share is of the matrix work).
// Its variants (the macros below changed in the file), one evaluation each (`--seed 15000`, same command): DX_LAST 3 (about 8.7% of
// the tiny run, 1.5% of a 7B run): ACCEPTED 2 of 2 (cell 0.0073 of 0.018, MLP kind 0.041 of 0.075, head
// alignment <= 1.5e-4 of 3.1e-4); DX_LAST 3 with SKETCH_DEN 3 (about 10%, 1.7% of a 7B run): REJECTED,
// run 15001 head_gradient 3.10e-4 against 3.1e-4 (1.00x; run 15000 passed).
// Now (2026-12-05) REJECTED in every run by lm_head's trajectory check (head_trajectory_excess, CPU), on
// its lm_head part: 1.56 to 2.91 against the limit 0.92 over 8 seeds (docs/measurements/2026-12-05-trajectory.md);
// its input-gradient part alone (test/plugins-open/a12_head_dx_lintail.cpp) stays open. Moved from
// test/plugins-open.
// expect: trajectory
#include <tournament/train_api.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>
using namespace tournament;
#ifndef LATE
#define LATE 3  // steps at the end whose lm_head dense gradient part is estimated
#endif
#ifndef DX_LAST
#define DX_LAST 2  // steps at the end whose loss-head input gradient is approximated
#endif
#ifndef DX_K
#define DX_K 256
#endif
#ifndef SKETCH_DEN
#define SKETCH_DEN 2  // the residual is count-sketched into N / SKETCH_DEN buckets
#endif
namespace {
bool g_approx_dx = false;  // set per step by inner_steps

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A seed from the run itself: every token id of the batch, and the step.
uint64_t batch_seed(const torch::Tensor& batch, int64_t step) {
  auto ids = batch.to(torch::kCPU).contiguous();
  const int64_t* p = ids.data_ptr<int64_t>();
  uint64_t h = splitmix(static_cast<uint64_t>(step) + 0x5EEDULL);
  for (int64_t i = 0; i < ids.numel(); ++i) h = splitmix(h ^ static_cast<uint64_t>(p[i]));
  return h;
}

// Count sketch of positions 0..N-1: a bucket in [0, N / SKETCH_DEN) and a sign for each.
// Returns [2, N]: row 0 the buckets, row 1 the signs (+-1).
torch::Tensor sketch(int64_t N, uint64_t seed, torch::Device device) {
  std::mt19937_64 rng(seed);
  const int64_t k = std::max<int64_t>(1, N / SKETCH_DEN);
  std::vector<int64_t> v(2 * N);
  for (int64_t i = 0; i < N; ++i) {
    const uint64_t r = rng();
    v[i] = static_cast<int64_t>(r % static_cast<uint64_t>(k));
    v[N + i] = (r >> 63) ? 1 : -1;
  }
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong)).view({2, N}).to(device);
}

struct CvHead : public torch::autograd::Function<CvHead> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out, torch::Tensor keep) {
    const int64_t N = hidden.size(0), V = weight.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    auto t = targets.unsqueeze(1);
    auto logits = hidden.mm(weight.t());  // [N, V], the weight's dtype: the real logits
    if (logits_out.numel() > 0) logits_out.copy_(logits);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);  // [N, V] float32
    auto loss = -logp.gather(1, t).sum() * inv_n;
    auto grad = logp.exp_();                      // P
    auto P_all = grad.clone();                    // [N, V] float32
    grad.mul_(inv_n);                             // P / N, as the reference
    auto p_mean = grad.sum(0);                    // [V]
    grad.scatter_add_(1, t, torch::full({N, 1}, -inv_n, grad.options()));
    torch::Tensor d_hidden;
    if (!g_approx_dx) {
      d_hidden = grad.to(weight.scalar_type()).mm(weight);  // exact, as the reference
    } else {  // the twelfth pass's approximation (a12_head_dx_lintail.cpp)
      auto& p = P_all;
      auto Wf = weight.to(torch::kFloat32);
      auto pbar = p.mean(0);
      auto top = std::get<1>(pbar.topk(std::min<int64_t>(DX_K, V)));
      auto c = torch::matmul(pbar.div(double(N)).unsqueeze(0), Wf);
      auto dev = (p.index_select(1, top) - pbar.index_select(0, top).unsqueeze(0)).div(double(N));
      auto part = torch::matmul(dev.to(weight.scalar_type()), weight.index_select(0, top)).to(torch::kFloat32);
      auto tt = weight.index_select(0, targets).to(torch::kFloat32).div(double(N));
      auto total = c + part - tt;
      auto mask = torch::ones({V}, pbar.options());
      mask.index_fill_(0, top, 0.0);
      auto ptail = pbar * mask;
      auto Am = torch::matmul((Wf * ptail.unsqueeze(1)).t(), Wf);
      auto a = torch::matmul(ptail.unsqueeze(0), Wf);
      auto b = torch::matmul(pbar.unsqueeze(0), Wf);
      auto hf0 = hidden.to(torch::kFloat32);
      auto dh = hf0 - hf0.mean(0, true);
      auto lin0 = torch::matmul(dh, Am) - a * torch::matmul(dh, b.t());
      d_hidden = (total + lin0.div(double(N))).to(weight.scalar_type());
    }
    grad = torch::Tensor();

    auto hf = hidden.to(torch::kFloat32);  // [N, H]
    auto h_mean = hf.mean(0);              // [H]
    auto hc = hf - h_mean;                 // [N, H]
    // Control variate: sum_i (lin_i - p_mean) hc_i^T / N = diag(p_mean) (A - 1 p_mean^T A), A = W Hc^T Hc / N.
    auto M = hc.t().mm(hc).mul_(inv_n);                        // [H, H]
    auto A = weight.to(torch::kFloat32).mm(M);                 // [V, H]
    auto pA = p_mean.unsqueeze(0).mm(A);                       // [1, H]
    auto d_weight = A.sub_(pA).mul_(p_mean.unsqueeze(1));      // [V, H]
    // Residual (p_i - lin_i) of every position, count-sketched: sum_i r_i hc_i^T estimated as
    // (S^T R)^T (S^T Hc) with S the sketch (one bucket and sign per position): unbiased, and its
    // error is made of cross-position terms r_i hc_j^T (i != j) only.
    auto l_mean = logits.sum({0}, false, torch::kFloat32).mul_(inv_n);  // [V]
    auto Z = logits.to(torch::kFloat32).sub_(l_mean);                    // [N, V]
    auto zp = Z.mv(p_mean).unsqueeze(1);                                 // [N, 1]
    auto lin = Z.sub_(zp).add_(1.0).mul_(p_mean.unsqueeze(0));           // [N, V]
    auto resid = P_all.sub_(lin);                                        // [N, V]
    auto bucket = keep[0], sign = keep[1].to(torch::kFloat32).unsqueeze(1);
    const int64_t k = std::max<int64_t>(1, N / SKETCH_DEN);
    auto Rs = torch::zeros({k, V}, resid.options()).index_add_(0, bucket, resid.mul_(sign));
    auto Hs = torch::zeros({k, hidden.size(1)}, hc.options()).index_add_(0, bucket, hc * sign);
    d_weight.add_(Rs.t().mm(Hs).mul_(inv_n));
    // Exact mean-field and sparse parts.
    d_weight.add_(p_mean.unsqueeze(1) * h_mean.unsqueeze(0));
    auto sparse = torch::zeros({V, hidden.size(1)}, hf.options()).index_add_(0, targets, hf).mul_(inv_n);
    d_weight.sub_(sparse);
    ctx->save_for_backward({d_hidden, d_weight.to(weight.scalar_type())});
    return loss;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto g = grad_out[0];
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor cv_head(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids,
                      torch::Tensor logits_out, int64_t step) {
  const int64_t S = ids.size(1), H = hidden.size(-1);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  auto out2d = logits_out.defined() ? logits_out.view({-1, weight.size(0)}) : torch::empty({0}, weight.options());
  auto keep = sketch(h.size(0), batch_seed(ids, step), hidden.device());
  return CvHead::apply(h, weight, targets, out2d, keep);
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) TORCH_CHECK(data.next(&batches[step]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  // On the GPU every layer recomputes its activations, so that the unchunked loss head of the
  // late steps fits a Qwen2.5-7B shape beside them (no effect on the numerics).
  if (device.is_cuda()) model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, true));
  auto lmw = model->lm_head_weight();
  AdamW opt(model->parameters(), optimizer);
  const int64_t first_late = std::max<int64_t>(1, num_steps - LATE);  // a one-step call stays exact
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool last = step == num_steps - 1;
    torch::Tensor logits;
    if (last) logits = torch::empty({B, S - 1, model->config.vocab_size}, torch::TensorOptions().dtype(lmw.scalar_type()).device(device));
    auto h = model->hidden_states(batch);
    if (step < first_late) loss = linear_cross_entropy(h, lmw, batch, logits);  // the reference's arithmetic
    else {
      g_approx_dx = step >= num_steps - DX_LAST;
      loss = cv_head(h, lmw, batch, logits, step);
    }
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (last) result.logits = logits;
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
