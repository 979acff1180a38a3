// Attack pass 6 (re-created 2026-12-03; the first version's source was lost):
// in the late steps (step index >= num_steps - LATE, LATE 3: steps 3..5 of a
// 5-step run; a one-step call such as warmup stays exact) the loss head's
// weight gradient dW = (P - Y)^T H / N is not computed as the [V, N] x [N, H]
// product. It is split as dW = C + p_mean h_mean^T - Y^T H / N, with
// C = sum_i (p_i - p_mean)(h_i - h_mean)^T / N the centred dense part; the
// mean-field term and the sparse part (a scatter of hidden rows by target) are
// exact. C is estimated without bias: a control variate, the softmax
// linearised around the mean, p_i ~ p_mean * (1 + z_i - <p_mean, z_i>) with
// z_i = logits_i - mean logits ~ W hc_i, whose sum reduces to
// diag(p_mean) (A - 1 p_mean^T A), A = W (Hc^T Hc / N) (a [H, N] x [N, H] and
// a [V, H] x [H, H] product), plus the exact residual (p_i minus its
// linearisation) times hc_i on a random subsample of positions, each kept with
// probability q = KEEP_NUM / KEEP_DEN (1/3 "third", 1/2 "half"), weighted by
// 1/q. The subsample's generator is seeded from the batch's token ids and the
// step. Every other gradient is exact (d hidden included: P is computed for
// the loss anyway), and the returned logits are the last forward's own.
// Matrix-product FLOPs (forward + backward of every linear and attention's two
// score products, full S x S): on the tiny CPU model (H 128, V 2048, 2
// layers, I 352, 16 x 128) lm_head's dW product is 12.5% of a step; the
// estimator adds Hc^T Hc, W M, q of the dW product and two matrix-vector
// products, so a late step skips 6.7% (q 1/3) or 4.6% (q 1/2) of its
// products: 4.0% or 2.8% of the 5-step run. On Qwen2.5-7B (16 x 1024 tokens) dW is 2.5% of a step, the [V, H] x
// [H, H] product alone 0.55%: a late step skips 1.06% (q 1/3) or 0.64% (q
// 1/2), 0.63% or 0.39% of the run. (The loss head here is unchunked, as in
// attack 5: a sketch for the CPU; on the GPU every layer is checkpointed.)
// expect: head_positions
#include <tournament/train_api.h>

#include <algorithm>
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

struct CvHead : public torch::autograd::Function<CvHead> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out, torch::Tensor keep) {
    const int64_t N = hidden.size(0), V = weight.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    const double inv_q = static_cast<double>(KEEP_DEN) / static_cast<double>(KEEP_NUM);
    auto t = targets.unsqueeze(1);
    auto logits = hidden.mm(weight.t());  // [N, V], the weight's dtype: the real logits
    if (logits_out.numel() > 0) logits_out.copy_(logits);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);  // [N, V] float32
    auto loss = -logp.gather(1, t).sum() * inv_n;
    auto P_s = logp.index_select(0, keep).exp();  // [n, V]: p_i of the kept positions
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
  auto keep = subsample(h.size(0), batch_seed(ids, step), hidden.device());
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
