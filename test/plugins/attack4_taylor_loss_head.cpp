// Attack pass 4 (2026-12-03, a fresh-context attacker): the loss head almost
// for free. Its three products over the vocabulary (forward logits, the
// hidden states' gradient, lm_head's gradient; about 37% of a step on the
// tiny model) are replaced by a first-order expansion of softmax around
// exp(z) ~ 1 + z, which factorises through H x H matrices; the one-hot parts
// (which tokens occur) stay exact, and only the last step's logits are
// computed, to be returned. About 35% of the run's matrix work skipped,
// 1.3-1.7x the reference's tokens/s. It was ACCEPTED on 8 of 8 runs while the
// tiny model started with a final norm of ones: its logits then spread about
// 0.23 and softmax is nearly linear. The random start now gives the final
// norm sqrt(3584 / hidden) (model.h, final_norm_start), so the tiny model's
// logits spread as Qwen2.5-7B's do (about 1.2), and the expansion is far
// off: cell loss 0.17 against 0.0029 (README, Verification).
// expect: cell_loss|batch_loss|probe_loss|logits|update_error|group_loss
#include <tournament/train_api.h>
#include <cmath>
using namespace tournament;

#ifndef FWD_APPROX_STEPS_MASK
#define FWD_APPROX_STEPS_MASK 0x0F  // steps 0..3 of 5
#endif
#ifndef BWD_APPROX_DW
#define BWD_APPROX_DW 1
#endif
#ifndef BWD_APPROX_DH
#define BWD_APPROX_DH 1
#endif

namespace {

struct LCE : public torch::autograd::Function<LCE> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out) {
    const int64_t N = hidden.size(0), V = weight.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    const auto bf = weight.scalar_type(), f32 = torch::kFloat32;
    // the returned logits (last step only): the one product over the vocabulary that is kept
    if (logits_out.numel() > 0) logits_out.copy_(hidden.mm(weight.t()));
    auto G = weight.t().mm(weight);                   // [H, H]  W^T W
    auto Gh = hidden.mm(G).to(f32);                   // [N, H]
    auto hf = hidden.to(f32);
    auto wbar = weight.sum(0, false, f32);            // [H]
    auto sum_z = hf.mv(wbar);                         // [N]  sum_v z_nv
    auto sum_z2 = (Gh * hf).sum(1);                   // [N]  sum_v z_nv^2
    auto mean = sum_z / double(V);
    auto var = sum_z2 / double(V) - mean * mean;
    auto lse = mean + var * 0.5 + std::log(double(V));  // cumulant expansion of log sum exp
    auto wt = weight.index_select(0, targets);          // [N, H]
    auto z_t = (hidden * wt).sum(1, false, f32);
    auto loss = (lse - z_t).sum() * inv_n;              // reported only
    auto a = torch::exp(-lse) * inv_n;                  // p_nv ~ a_n exp(z_nv)
    auto c = 1.0 + (sum_z2 / double(V)) * 0.5;         // constant part of exp(z) ~ 1 + z + z^2/2
    auto ah = hf * a.unsqueeze(1);
    auto d_weight = weight.mm(hidden.t().mm(ah.to(bf))).to(f32);   // W (H^T diag(a) H)
    d_weight.add_((ah * c.unsqueeze(1)).sum(0).unsqueeze(0));
    d_weight.index_add_(0, targets, hf * (-inv_n));                // one-hot part, exact
    auto d_hidden = (a * c).unsqueeze(1) * wbar.unsqueeze(0) + a.unsqueeze(1) * Gh - wt.to(f32) * inv_n;
    ctx->save_for_backward({d_hidden.to(hidden.scalar_type()), d_weight.to(bf)});
    return loss;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    auto s = ctx->get_saved_variables();
    return {s[0] * g[0].to(s[0].scalar_type()), s[1] * g[0].to(s[1].scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace-less helpers below
namespace {
torch::Tensor lce(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids, torch::Tensor logits_out) {
  const int64_t S = ids.size(1), H = hidden.size(-1);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  auto out2d = torch::empty({0}, weight.options());
  if (logits_out.defined()) out2d = logits_out.view({-1, weight.size(0)});
  return LCE::apply(h, weight, targets, out2d);
}
}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool last = step == num_steps - 1;
    auto hidden = model->hidden_states(batch);
    torch::Tensor logits;
    if (last) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = lce(hidden, model->lm_head_weight(), batch, logits);
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
