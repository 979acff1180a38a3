// Attack pass 16: the tenth pass's lm_head count sketch (test/plugins/attack10_head_cv_sketch.cpp, via
// attack15_head_stack.cpp) made blind to the new "lm_head's untargeted rows" check. All timed batches
// are served at once (data.next x num_steps before step 1), so from step 1 the plugin knows every
// token that is a target anywhere, hence EXACTLY the rows the judge reads (no target in any timed
// batch), and it holds the start weights, hence exactly the elements it reads (|w_start| < 2^-9: bf16
// spacing <= lr / 8). In the sketched steps lm_head's centred dense weight-gradient part is a
// linearised control variate + a count sketch of the residual over N / DEN buckets (pass 10), but the
// (untargeted row, small element) pairs get the exact dense gradient sum_i p_iv h_ij / N (N
// multiply-adds each; those rows have no sparse part), so the check reads honest values there
// (0.0009-0.0034 against its 0.0185 limit; honest runs 0.0092 at most). New too: MATCHING 1 buckets
// every position in a random perfect matching (groups of exactly DEN) instead of a Poisson hash:
// C(DEN,2) cross pairs per bucket instead of DEN^2/2 on average, half the error variance at DEN 2,
// which keeps the head-gradient check (head_alignment_abs, 3.1e-4) at bay. No MLP/attention change.
// Command per evaluation: `cd /work/attack16 && bin/tournament local-bench test/plugins-open/FILE
// --runs 2 --seed S --json --work-dir /tmp/a16work` (S = 16000, 16100, 16200: runs S and S+1).
// Every run slower on this CPU's wall clock than the reference (~3,000-3,700 tokens/s against
// ~10,000: float32 [N, V] temporaries); the claim is on the matrix work skipped.
// Work share (matrix multiply-adds, counted by hand; tiny default: H 128, V 2048, I 352, 2 layers, 4/2
// heads, 5 steps of 16 x 128, N = 2032 loss positions a step): a step = decoder linears 3 x 2048 x 2 x
// 184,320 = 2,264.9M + attention 201M (causal; 403M full S x S) + loss head 3 N V H = 1,598.0M
// (forward logits, dH, dW: 532.7M each) = 4,064M (4,266M); the run 20,322M (21,328M); the optimizer
// has no products. A sketched step replaces dW (532.7M) by the sketch product (N / DEN) V H (266.3M at
// DEN 2, 177.6M at 3, 133.2M at 4) + Hc^T Hc (N H^2 33.3M) + W M (V H^2 33.6M) + pA (0.3M) + Z p_mean
// (N V 4.2M) + the exact pairs (N x ~5,600 pairs = 11.4M; untargeted rows 26.1-29.0% of V over 40
// draws of the tiny data's 80 timed rows x |w| < 2^-9 = 7.8% of N(0, 0.02) -> 5,300-5,900 pairs).
// Saved per sketched step: 183.7M (DEN 2), 272.5M (DEN 3), 316.9M (DEN 4).
// THIS FILE: LATE 3 (steps 3-5 sketched), SKETCH_DEN 2, MATCHING 1, MASK_LOG2 -9, DX_LAST 0.
// SHARE: 3 x 183.7M = 551M = 2.71% of the run (2.58% counting full S x S attention).
// RESULTS (2026-12-05, tiny default, CPU): ACCEPTED 6 of 6 runs, 3 of 3 evaluations (16000, 16100,
// 16200). Closest checks per run (limit): head alignment 1.42e-4, 1.81e-4, 0.80e-4, 0.82e-4, 0.41e-4,
// 0.96e-4 (3.1e-4: at most 0.58); batch loss <= 8.7e-4 (0.0015); cell <= 0.0079 (0.018); lm_head kind
// <= 0.048 (0.16); update <= 0.032 (0.097); untargeted rows 0.0010-0.0015 (0.0185); layer positions
// <= 0.27 (1.0); |probe - ref| <= 3.8e-4 (0.002). The same file with MATCHING 0 (the pass-10 Poisson
// hash; this file's first version): 16000 REJECTED (run 16001 head_gradient 3.34e-4 > 3.1e-4; run
// 16000 ok, untargeted 0.0012/0.0016), 16100 ACCEPTED 2/2.
// Plus 16300 (after the header was written, same code): ACCEPTED 2/2 (head alignment 0.51e-4, 1.57e-4;
// untargeted 0.0011, 0.0011): 8 of 8 runs, 4 of 4 evaluations in all.

// VARIANTS (this file with the macros changed; same command, `--runs 2`, seeds as listed; shares against the
// causal count): LATE 4 (3.62%): ACCEPTED 6/6 runs (16000, 16100, 16200); SKETCH_DEN 3 (4.02%): ACCEPTED 6/6;
// LATE 4 + SKETCH_DEN 3 (5.36%): ACCEPTED 6/6, head alignment 2.99e-4 of 3.1e-4 on run 16200; LATE 4 +
// SKETCH_DEN 4 (6.24%): REJECTED (run 16001 head_gradient 3.13e-4; 16100 passed 2/2); LATE 5, every step
// (4.52%): REJECTED (run 16001 head_gradient 5.09e-4); LATE 4 + DX_LAST 2 (the twelfth pass's input-gradient
// cheat stacked, 7.54%): ACCEPTED 8/8 (16000-16300; MLP kind <= 0.030 of 0.075, group shift 0.0013 of 0.0021).
// The check this pass was aimed at (lm_head's untargeted rows, session 31) was removed after it: every
// element it read is one this file computes exactly (docs/measurements/2026-12-04-head-untargeted.md).
// Against the checks in force now the exact pairs are not needed; the balanced buckets (MATCHING 1) are
// what keep the head-gradient check under its limit.
// Since session 38 (lm_head's step judged from the run's recorded loss-head input, limit 0.16) it reads 1.04 to
// 1.83 on lm_head's trajectory and is rejected in every run measured (docs/measurements/2026-12-05-loss-head-record.md).
// expect: trajectory|head_positions|head_gradient
#include <tournament/train_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <random>
#include <vector>
using namespace tournament;
#ifndef LATE
#define LATE 3  // steps at the end whose lm_head dense gradient part is estimated
#endif
#ifndef DX_LAST
#define DX_LAST 0  // steps at the end whose loss-head input gradient is approximated (a12; 0 = off)
#endif
#ifndef DX_K
#define DX_K 256
#endif
#ifndef SKETCH_DEN
#define SKETCH_DEN 2  // the residual is count-sketched into N / SKETCH_DEN buckets
#endif
#ifndef MATCHING
#define MATCHING 1  // balanced buckets (see sketch())
#endif
#ifndef MASK_LOG2
#define MASK_LOG2 -9  // elements whose start |w| < 2^MASK_LOG2 (bf16 spacing <= lr / 8 for -9) are kept exact
#endif
namespace {
bool g_approx_dx = false;  // set per step by inner_steps
torch::Tensor g_pair_rows, g_pair_cols;  // (row, column) of every element kept exact: untargeted row, small start

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
#if MATCHING
  // Balanced buckets: a random permutation cut into groups of SKETCH_DEN (a perfect matching for 2):
  // every bucket holds exactly SKETCH_DEN positions, so the cross-position error has C(DEN, 2)
  // pairs per bucket instead of the Poisson hash's DEN^2 / 2 on average (half the variance at 2).
  std::vector<int64_t> perm(N);
  for (int64_t i = 0; i < N; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int64_t m = 0; m < N; ++m) v[perm[m]] = std::min<int64_t>(m / SKETCH_DEN, k - 1);
  for (int64_t i = 0; i < N; ++i) v[N + i] = (rng() >> 63) ? 1 : -1;
#else
  for (int64_t i = 0; i < N; ++i) {
    const uint64_t r = rng();
    v[i] = static_cast<int64_t>(r % static_cast<uint64_t>(k));
    v[N + i] = (r >> 63) ? 1 : -1;
  }
#endif
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
    // The exact dense gradient at the pairs the untargeted-row check reads: N multiply-adds per pair.
    torch::Tensor exact_pairs;
    if (g_pair_rows.numel() > 0)
      exact_pairs = (P_all.index_select(1, g_pair_rows) * hf.index_select(1, g_pair_cols)).sum(0).mul_(inv_n);
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
    if (exact_pairs.defined()) {  // untargeted rows: no sparse part, the dense part is the whole gradient
      auto flat = d_weight.view({-1});
      flat.index_put_({g_pair_rows * hidden.size(1) + g_pair_cols}, exact_pairs);
    }
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
  {  // rows no timed batch targets (all batches are served at once) x elements small at the start
    const int64_t V = lmw.size(0);
    auto targeted = torch::zeros({V}, torch::TensorOptions().dtype(torch::kBool).device(device));
    for (auto& b : batches) targeted.index_fill_(0, b.narrow(1, 1, S - 1).reshape({-1}), true);
    auto small = lmw.abs().to(torch::kFloat32).lt(std::ldexp(1.0, MASK_LOG2));
    auto sel = small.logical_and(targeted.logical_not().unsqueeze(1));
    auto nz = sel.nonzero();  // [P, 2]
    g_pair_rows = nz.select(1, 0).contiguous();
    g_pair_cols = nz.select(1, 1).contiguous();
    std::fprintf(stderr, "a16: untargeted rows %lld of %lld, exact pairs %lld of %lld\n",
                 (long long)targeted.logical_not().sum().item<int64_t>(), (long long)V, (long long)nz.size(0),
                 (long long)lmw.numel());
  }
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
