// ATTACK PASS 17: lm_head's trajectory check (head_trajectory_excess) blinded by
// FABRICATED recorded states, on top of the tenth pass's lm_head count sketch
// (SKETCH_DEN 2: 2.83% of the tiny run's matrix work skipped; fabrication adds only
// elementwise work on lm_head). The plugin never calls data.step_done() during
// training; after it, it writes the T-1 slots itself through step_done() with
// model.norm.weight = 0 (so the judge's replay sees hidden = 0 and an exactly
// zero lm_head gradient: the noise is 0 and the judge's step is a pure
// function of its moments, i.e. of g1, the judge's step-1 gradient at the
// start, which the plugin computed with the same arithmetic) and lm_head = a
// chain of zero-gradient AdamW steps (steps 2..T, adamw_unfused_step_) whose
// end is the plugin's real final lm_head within an ulp; the final lm_head is
// set to the chain's exact end and norm.weight restored. Step 1 is never
// judged (no history). Result: max_head_trajectory 0 in every run.
// RESULTS (2026-12-05): `bin/tournament local-bench test/plugins/a17_traj_blind_sketch.cpp --runs 2 --seed S --json`
//   against the trajectory as the pass found it: ACCEPTED in 10 of 10 runs (S = 10000, 10004, 10012, 20001,
//   30000; max_head_trajectory 0; the SKETCH_DEN 3 variant 6 of 6). Now REJECTED as `unreachable`: a recorded
//   final norm of 0 is no AdamW step from a start of 5.29 (every run of S = 10000, 10004).
#include <cstdio>
// Attack pass 10, case B: the sixth pass's cheat (attack6_head_cv_subsample)
// with its sampling replaced by a COUNT SKETCH. In the late steps (LATE, 3:
// steps 3..5) lm_head's centred dense weight-gradient part
// C = sum_i (p_i - p_mean)(h_i - h_mean)^T / N is not computed as the
// [V, N] x [N, H] product: a control variate (softmax linearised around the
// mean: a [H, N] x [N, H] and a [V, H] x [H, H] product) plus the residual
// r_i = p_i - lin_i estimated as (S^T R)^T (S^T Hc) / N, where S hashes every
// position to one of N / SKETCH_DEN buckets with a random sign (sums, no
// products) and the product is [V, k] x [k, H]. Unbiased; its error holds
// only cross-position terms r_i hc_j^T (i != j, same bucket): no position's
// own rank-one part, so the position checks' matched pairs see nothing
// special (the sixth pass's Bernoulli sample left c_i r_i hc_i^T).
// Work skipped (matrix multiply-adds of forward + backward, the CPU math path
// with full S x S attention): lm_head's dW product is 12.55% of a step on the
// tiny model (H 128, V 2048, 2 layers, 16 x 128); a late step adds Hc^T Hc
// (0.78%), W M (0.78%) and the sketch product (12.55% / SKETCH_DEN): with
// SKETCH_DEN 2 it skips 4.7% of a step, 3 steps of 5: 2.83% of the run
// (SKETCH_DEN 3: 6.8% a step, 4.1% of the run). On Qwen2.5-7B (16 x 1024)
// dW is 2.53% of a step and W M alone 22% of dW (H / N): SKETCH_DEN 2 skips
// 0.65% a step, 0.39% of the run (SKETCH_DEN 3: 0.64%). The [N, V] float32
// temporaries of this sketch make it slower on the CPU's wall clock; the
// matrix work is what it skips.
// RESULTS (this 2-core CPU, tiny default, 2026-12-04):
//   SKETCH_DEN 2 (this file): `bin/tournament local-bench test/plugins/a10_head_cv_sketch.cpp --runs 2 --seed S --json` with S = 10000, 10006 (as
//   var/head_sk2.cpp, same numerics), 10010, 10012, 10020: ACCEPTED 10 of 10
//   runs (5 of 5 evaluations); `bin/tournament calibrate --device cpu
//   --seed-count 3 --seed 1000 --threads 1 --cases baseline,
//   test/plugins-open/a10_exact_base_sketch.cpp,test/plugins-open/
//   a10_head_cv_sketch.cpp --json`: 3 of 3 runs pass. Closest check: head
//   alignment 0.37-0.63 of 3.1e-4; head positions 0.01-0.34 (limits 1.6 /
//   2.0), layer positions <= 0.38 (1.0), lm_head's update of one kind
//   0.044-0.058 (0.16).
//   SKETCH_DEN 3: S = 10000, 10002, 10004, 10006: ACCEPTED 7 of 8 runs,
//   REJECTED run 10007 by head_gradient (3.18e-4 against 3.1e-4: that
//   evaluation rejected); calibrate seeds 1000-1002: 3 of 3 pass. LATE 4 +
//   SKETCH_DEN 4 (var/head_sk4_late4.cpp): REJECTED once by head_gradient.
// The sixth pass's Bernoulli version sat at 2.5 to 24 on head_positions; the
// sketch at 0.01 to 0.35.
// Now (2026-12-05) REJECTED by lm_head's trajectory check (head_trajectory_excess, CPU: every timed step
// repeated by the judge from the weights the run recorded before it): 1.62 to 5.47 against the limit 0.92
// (the honest tuned example at most 0.458 over 15 seeds) in 10 runs of 10 seeds
// (docs/measurements/2026-12-05-trajectory.md); moved from test/plugins-open.
// expect: unreachable
#include <tournament/train_api.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>
using namespace tournament;
#ifndef LATE
#define LATE 3  // steps at the end whose lm_head dense gradient part is estimated
#endif
#ifndef SKETCH_DEN
#define SKETCH_DEN 2  // the residual is count-sketched into N / SKETCH_DEN buckets
#endif
namespace {

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
    auto d_hidden = grad.to(weight.scalar_type()).mm(weight);  // exact, as the reference
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


// ---- attack 17: blind the trajectory check ----
// The judge repeats step t from the recorded slot t-1 with ITS OWN moments. A
// recorded state whose final norm is zero gives lm_head an exactly zero
// gradient (hidden = 0), so the judge's step from it is a pure function of
// its moments, which after step 1 come from g1 only (the judge's gradient at
// the start, which the plugin computes with the same arithmetic). Step 1 is
// never judged (no history). So: slots 0..T-2 = the real final weights with
// norm.weight = 0 and lm_head = a chain of zero-gradient AdamW steps whose
// end is (within an ulp) the plugin's real final lm_head; the final lm_head
// is set to the chain's exact end.
namespace {
void fabricate(Qwen2ForCausalLM& model, DataIterator& data, torch::Tensor lmw, torch::Tensor g1, int64_t T,
               const OptimizerConfig& opt) {
  torch::NoGradGuard ng;
  if (T < 2) { data.step_done(); return; }
  auto dt = lmw.scalar_type();
  // the judge's moments after step 1 (bf16 state), from g1
  auto m = torch::zeros_like(lmw), v = torch::zeros_like(lmw);
  { auto dummy = lmw.clone(); adamw_unfused_step_(dummy, g1, m, v, 1, opt); }
  std::vector<torch::Tensor> ms, vs;  // moments before judge step k (k = 2..T)
  auto zero = torch::zeros_like(lmw);
  auto chain = [&](torch::Tensor x, std::vector<torch::Tensor>* inter) {  // steps 2..T from x (slot 0)
    auto mm = m.clone(), vv = v.clone();
    for (int64_t k = 2; k <= T; ++k) {
      adamw_unfused_step_(x, zero, mm, vv, k, opt);
      if (inter) inter->push_back(x.clone());
    }
    return x;
  };
  const auto F = lmw.detach().clone();
  auto FF = F.to(torch::kFloat32);
  auto end0 = chain(F.clone(), nullptr).to(torch::kFloat32);
  auto base = (FF + (FF - end0)).to(dt).to(torch::kFloat32);
  auto spacing = torch::ldexp(torch::ones_like(base), std::get<1>(torch::frexp(base)) - 8);
  torch::Tensor best, bestd;
  for (int j = -6; j <= 6; ++j) {
    auto cand = (base + j * spacing).to(dt);
    auto e = chain(cand.clone(), nullptr).to(torch::kFloat32);
    auto d = (e - FF).abs();
    if (!best.defined()) { best = cand; bestd = d; continue; }
    auto better = d < bestd;
    best = torch::where(better, cand, best);
    bestd = torch::where(better, d, bestd);
  }
  std::vector<torch::Tensor> inter;
  auto endx = chain(best.clone(), &inter);  // inter[k-2] = state after judge step k
  auto& normw = model->model->norm->weight;
  auto normsave = normw.detach().clone();
  std::fprintf(stderr, "a17: final lm_head moved on %lld of %lld elements\n",
               (long long)endx.ne(F).sum().item<int64_t>(), (long long)F.numel());
  // slot 0 = best (state after step 1), slot k = inter[k-1] for k = 1..T-2
  normw.zero_();
  lmw.copy_(best);
  data.step_done();
  for (int64_t k = 1; k <= T - 2; ++k) {
    lmw.copy_(inter[k - 1]);
    data.step_done();
  }
  normw.copy_(normsave);
  lmw.copy_(endx);  // the final weights: the chain's exact end
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
  torch::Tensor loss, g1;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool last = step == num_steps - 1;
    torch::Tensor logits;
    if (last) logits = torch::empty({B, S - 1, model->config.vocab_size}, torch::TensorOptions().dtype(lmw.scalar_type()).device(device));
    auto h = model->hidden_states(batch);
    if (step < first_late) loss = linear_cross_entropy(h, lmw, batch, logits);  // the reference's arithmetic
    else loss = cv_head(h, lmw, batch, logits, step);
    loss.backward();
    if (step == 0) g1 = lmw.grad().detach().clone();  // the judge's own step-1 gradient (same arithmetic)
    opt.step();
    // NO data.step_done() here: the slots are fabricated after training (below).
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (last) result.logits = logits;
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  fabricate(model, data, lmw, g1, num_steps, optimizer);
  return result;
}
