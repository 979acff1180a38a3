// a19_head_dx_tail_linear: CHEAT (security test, session 33 attack pass; the
// twelfth pass's open gap re-implemented): in the last LAST steps (default 2)
// the loss head's input gradient d_hidden = g W over the whole vocabulary is
// computed exactly only over the K = 256 columns with the largest mean
// probability; the other columns' contribution is replaced by its first-order
// expansion in log-probability around each column's mean (c0 - lse_i c1 + M h_i
// with M = W_t^T diag(e^{a}) W_t, an H x H matrix), and the targets' -1/N W_y
// part is exact. lm_head's own weight gradient stays exact, so lm_head's
// trajectory reads nothing; the MLP's weights, whose gradients carry d_hidden
// into every layer, do.
// Share of the work skipped (tiny default): per step 532.7M - 66.6M (head
// product) - 29M (M) - 33.5M (M h) = 404M of about 4.07G (9.9%); the last 2 of
// 5 steps 3.97% of the run, the last 1 1.98%; the suite's 2 of 3 steps 6.6%.
// Measured (2026-12-05, AVX-512 CPU, docs/measurements/2026-12-05-mlp-trajectory.md):
// before mlp_trajectory_excess, the last 2 of 5 steps ACCEPTED (seed 19004, an
// AVX2 CPU); the MLP's trajectory reads 102 with the last 2 of 5 steps, 54 to
// 74 with the last 1, 55 to 93 in the suite's shape (limit 26; the honest tuned
// example at most 13.0 and 7.5).
// expect: trajectory|batch_loss|probe_loss
#include <tournament/train_api.h>
#include <tournament/kernels.h>

using namespace tournament;
namespace K = tournament::kernels;

#ifndef LAST
#define LAST 2
#endif
#ifndef HEAD_K
#define HEAD_K 256
#endif

namespace {

torch::Tensor head(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids,
                   const torch::Tensor& logits_out, bool approx, torch::Tensor* d_hidden, torch::Tensor* d_weight) {
  const int64_t B = ids.size(0), S = ids.size(1), H = hidden.size(-1), V = weight.size(0);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  const int64_t N = h.size(0);
  const double inv_n = 1.0 / static_cast<double>(N);
  auto g = h.mm(weight.t());
  if (logits_out.defined()) logits_out.view({N, V}).copy_(g);
  torch::Tensor lse;
  if (approx) lse = g.to(torch::kFloat32).logsumexp(1);  // [N]
  auto row_logp = torch::empty({N}, g.options().dtype(torch::kFloat32));
  K::cross_entropy_grad_(g, targets, inv_n, row_logp);
  *d_weight = g.t().mm(h);  // exact
  *d_hidden = torch::zeros_like(hidden);
  if (!approx) {
    d_hidden->narrow(1, 0, S - 1).copy_(g.mm(weight).view({B, S - 1, H}));
  } else {
    auto p = g.to(torch::kFloat32);
    p.scatter_add_(1, targets.view({N, 1}), torch::full({N, 1}, inv_n, p.options()));
    p.mul_(static_cast<double>(N));  // probabilities
    auto pbar = p.mean(0);
    auto order = pbar.argsort(0, /*descending=*/true);
    auto hd = order.narrow(0, 0, HEAD_K), tl = order.narrow(0, HEAD_K, V - HEAD_K);
    auto dh = g.index_select(1, hd).mm(weight.index_select(0, hd)).to(torch::kFloat32);  // exact head columns
    auto a = p.index_select(1, tl).clamp_min(1e-30).log().mean(0);                       // [Vt]
    auto ea = a.exp();
    auto wt = weight.index_select(0, tl).to(torch::kFloat32);                            // [Vt, H]
    auto c1 = ea.unsqueeze(0).mm(wt);                                                    // [1, H]
    auto c0 = (ea * (1 - a)).unsqueeze(0).mm(wt);                                        // [1, H]
    auto M = wt.t().mm(wt * ea.unsqueeze(1));                                            // [H, H]
    auto hf = h.to(torch::kFloat32);
    auto tail = hf.mm(M).add_(c0).sub_(lse.unsqueeze(1) * c1).mul_(inv_n);              // P part of the tail
    // the targets in the tail: -1/N W_y (exact)
    auto in_tail = torch::ones({V}, torch::TensorOptions().dtype(torch::kBool));
    in_tail.index_fill_(0, hd, false);
    auto tmask = in_tail.index_select(0, targets).to(torch::kFloat32).unsqueeze(1);     // [N, 1]
    tail.sub_(weight.index_select(0, targets).to(torch::kFloat32).mul_(tmask), inv_n);
    dh.add_(tail);
    d_hidden->narrow(1, 0, S - 1).copy_(dh.view({B, S - 1, H}));
  }
  return -row_logp.sum() * inv_n;
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batches[step]), "data ran out");
  }
  const int64_t B = data.batch_size(), S = data.seq_len();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor loss;
  auto W = model->lm_head_weight();
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    auto hidden = model->hidden_states(batch);
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    torch::Tensor dh, dw;
    {
      torch::NoGradGuard ng;
      loss = head(hidden.detach(), W.detach(), batch, logits, step >= num_steps - LAST, &dh, &dw);
    }
    hidden.backward(dh);
    W.mutable_grad() = dw;
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits;
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
