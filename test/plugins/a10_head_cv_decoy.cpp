// Attack pass 10, case A: the sixth pass's cheat (attack6_head_cv_subsample:
// lm_head's centred dense weight-gradient part estimated from a control
// variate plus the exact residual on a random 1/3 of the positions, in the
// last 3 steps) plus a DECOY aimed at the position check: on a random
// 1/DECOY_DEN of the positions k the gradient also gets
// s_k * g * r_pair(k) hc_k^T / N, where pair(k) is the position the judge
// pairs k with (row r ^ 2, same place, inside blocks of four rows), r the
// pair's softmax residual, s_k a random sign (zero mean), and g chosen so
// the decoy's energy along MISMATCHED pairs is DECOY_M^2 times the sampling
// error's along matched ones. The check's statistic is sum a^2 / sum b^2 - 1
// (a: matched, b: mismatched), so the decoy raises sum b^2 and the excess
// falls.
// Work skipped: the sixth pass's 4.06% of the tiny run (q 1/3, 3 steps),
// less the decoy's product (1/32 of the dW product a late step: 0.24% of the
// run): about 3.8%; on Qwen2.5-7B about 0.6%.
// RESULTS (this 2-core CPU, tiny default, 2026-12-04), `bin/tournament local-bench test/plugins/a10_head_cv_decoy.cpp --runs 2 --seed S --json`:
//   S = 10000: ACCEPTED 2 of 2 (head positions 0.55 / 0.17 where the sixth
//   pass's cheat sat at 2.5 to 24; head alignment 2.90e-4, 0.94 of its
//   limit); S = 10004: REJECTED 2 of 2 by head_gradient (3.24e-4, 3.45e-4
//   against 3.1e-4): the decoy's large rank-one terms project by chance on
//   the batches' dense directions. The decoy defeats the position statistic;
//   the count sketch (a10_head_cv_sketch.cpp) does it without the noise.
// Now (2026-12-05) REJECTED in every run by lm_head's trajectory check (head_trajectory_excess, CPU):
// 2.88 to 6.38 against the limit 0.92 over 8 seeds (docs/measurements/2026-12-05-trajectory.md); moved
// from test/plugins-open.
// expect: trajectory|head_gradient
#include <tournament/train_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>
using namespace tournament;
#ifndef LATE
#define LATE 3  // steps at the end whose lm_head dense gradient part is estimated
#endif
#ifndef KEEP_NUM
#define KEEP_NUM 1  // each position's residual kept with probability KEEP_NUM / KEEP_DEN
#endif
#ifndef KEEP_DEN
#define KEEP_DEN 3
#endif
#ifndef DECOY_DEN
#define DECOY_DEN 32  // a random 1/DECOY_DEN of the positions carry a decoy
#endif
#ifndef DECOY_M
#define DECOY_M 1.5  // decoy energy along mismatched pairs, as a multiple of the sampling error's along matched ones
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

// Positions 0..N-1, each kept with probability q (Bernoulli): [n] int64 on `device`.
torch::Tensor subsample(int64_t N, uint64_t seed, torch::Device device) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(static_cast<double>(KEEP_NUM) / static_cast<double>(KEEP_DEN));
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < N; ++i)
    if (keep(rng)) idx.push_back(i);
  return torch::tensor(idx, torch::TensorOptions().dtype(torch::kLong)).to(device);
}

// The judge pairs position (row r, place s) with (row r ^ 2, place s) inside blocks of four rows.
torch::Tensor decoy_positions(int64_t rows, int64_t places, uint64_t seed, std::vector<int64_t>* pairs,
                              std::vector<float>* signs) {
  std::mt19937_64 rng(seed ^ 0xDEC0DEULL);
  std::bernoulli_distribution pick(1.0 / DECOY_DEN);
  std::vector<int64_t> idx;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t s = 0; s < places; ++s)
      if (pick(rng)) {
        idx.push_back(r * places + s);
        pairs->push_back((r ^ 2) * places + s);
        signs->push_back((rng() & 1) ? 1.0f : -1.0f);
      }
  return torch::tensor(idx, torch::TensorOptions().dtype(torch::kLong));
}

struct CvHead : public torch::autograd::Function<CvHead> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out, torch::Tensor keep,
                               torch::Tensor dk, torch::Tensor dpair, torch::Tensor dsign) {
    const int64_t N = hidden.size(0), V = weight.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    const double inv_q = static_cast<double>(KEEP_DEN) / static_cast<double>(KEEP_NUM);
    auto t = targets.unsqueeze(1);
    auto logits = hidden.mm(weight.t());  // [N, V], the weight's dtype: the real logits
    if (logits_out.numel() > 0) logits_out.copy_(logits);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);  // [N, V] float32
    auto loss = -logp.gather(1, t).sum() * inv_n;
    auto P_s = logp.index_select(0, keep).exp();  // [n, V]: p_i of the kept positions
    auto P_d = logp.index_select(0, dpair).exp();  // [m, V]: p of the decoys' pairs
    auto grad = logp.exp_().mul_(inv_n);          // P / N, as the reference
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
    // Residual on the kept positions, weighted by 1/q: (p_i - lin_i) hc_i^T / (q N).
    auto l_mean = logits.sum({0}, false, torch::kFloat32).mul_(inv_n);  // [V]
    auto Z = logits.index_select(0, keep).to(torch::kFloat32).sub_(l_mean);  // [n, V]
    auto zp = Z.mv(p_mean).unsqueeze(1);                                   // [n, 1]
    auto lin = Z.sub_(zp).add_(1.0).mul_(p_mean.unsqueeze(0));             // [n, V]
    auto resid = P_s.sub_(lin);                                            // [n, V]
    d_weight.add_(resid.t().mm(hc.index_select(0, keep)).mul_(inv_n * inv_q));
    // Decoy: the pair's residual along this position's hidden state, random sign, zero mean.
    {
      auto Zd = logits.index_select(0, dpair).to(torch::kFloat32).sub_(l_mean);
      auto zd = Zd.mv(p_mean).unsqueeze(1);
      auto lind = Zd.sub_(zd).add_(1.0).mul_(p_mean.unsqueeze(0));
      auto rd = P_d.sub_(lind).mul_(dsign.unsqueeze(1));  // [m, V]
      const double g = DECOY_M * std::sqrt((inv_q - 1.0) * DECOY_DEN);
      d_weight.add_(rd.t().mm(hc.index_select(0, dk)).mul_(inv_n * g));
    }
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
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor cv_head(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids,
                      torch::Tensor logits_out, int64_t step) {
  const int64_t S = ids.size(1), H = hidden.size(-1);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  auto out2d = logits_out.defined() ? logits_out.view({-1, weight.size(0)}) : torch::empty({0}, weight.options());
  const uint64_t seed = batch_seed(ids, step);
  auto keep = subsample(h.size(0), seed, hidden.device());
  std::vector<int64_t> pairs;
  std::vector<float> signs;
  auto dk = decoy_positions(ids.size(0), S - 1, seed, &pairs, &signs).to(hidden.device());
  auto dpair = torch::tensor(pairs, torch::TensorOptions().dtype(torch::kLong)).to(hidden.device());
  auto dsign = torch::tensor(signs).to(hidden.device());
  return CvHead::apply(h, weight, targets, out2d, keep, dk, dpair, dsign);
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
    else loss = cv_head(h, lmw, batch, logits, step);
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
