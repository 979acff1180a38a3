// Attack pass 5 (2026-12-03, a fresh-context attacker): in the last step, the
// loss head's weight gradient dW = (P - Y)^T H / N keeps its cheap
// batch-specific part Y^T H / N exact and reuses the dense part P^T H / N (a
// [V, N] x [N, H] product, about 12.5% of a step on the tiny CPU model, 2.5%
// of the run) from the step before, with this step's mean-field term
// p_mean h_mean^T swapped in. Every other gradient is exact, so the returned
// logits equal the reference's and the group, cell and batch checks see the
// batch-specific drop they expect; lm_head's update error (0.034 to 0.036)
// sat inside the honest spread (0.039): ACCEPTED on 8 of 8 runs until the
// head-gradient check. That check projects lm_head's difference from the
// reference's on each timed batch's own dense gradient: this cheat leaves
// -1.2e-3 to -2.3e-3 of the reference's update along the last batch's and
// +1e-3 to +3e-3 along the batch before's, where honest runs stay within
// 1.4e-4 (README, Verification). STALE_LAST 2 or 3 reuses in the last two or
// three steps. On Qwen2.5-7B the same product is about 2.4% of a step.
// expect: head_gradient
#include <tournament/train_api.h>

#include <algorithm>
using namespace tournament;
#ifndef STALE_LAST
#define STALE_LAST 1  // steps at the end that reuse the dense part of the step before them
#endif
namespace {
bool g_stale = false;
bool g_keep = false;  // this step computes the dense part that later steps reuse
torch::Tensor g_dense, g_mf;  // [V, H] float32: P^T H / N of the last step that computed it
struct MyLCE : public torch::autograd::Function<MyLCE> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out) {
    const int64_t N = hidden.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    auto t = targets.unsqueeze(1);
    auto logits = hidden.mm(weight.t());
    if (logits_out.numel() > 0) logits_out.copy_(logits);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);
    auto loss = -logp.gather(1, t).sum() * inv_n;
    auto grad = logp.exp_().mul_(inv_n);
    auto p_mean = grad.sum(0);                                                       // [V]
    auto mf = p_mean.unsqueeze(1) * hidden.to(torch::kFloat32).mean(0).unsqueeze(0);  // [V, H]
    grad.scatter_add_(1, t, torch::full({N, 1}, -inv_n, grad.options()));
    auto grad_low = grad.to(weight.scalar_type());
    auto d_hidden = grad_low.mm(weight);
    torch::Tensor sparse;
    if (g_keep || g_stale) sparse = torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat32))
                      .index_add_(0, targets, hidden.to(torch::kFloat32)).mul_(inv_n);  // Y^T H / N
    torch::Tensor d_weight;
    if (!g_stale) {
      auto dw = grad_low.t().mm(hidden).to(torch::kFloat32);
      if (g_keep) { g_dense = dw + sparse; g_mf = mf; }
      d_weight = dw.to(weight.scalar_type());
    } else {
      d_weight = (g_dense - g_mf + mf - sparse).to(weight.scalar_type());
    }
    ctx->save_for_backward({d_hidden, d_weight});
    return loss;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto g = grad_out[0];
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};
torch::Tensor my_lce(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids, torch::Tensor logits_out) {
  const int64_t S = ids.size(1), H = hidden.size(-1);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  auto out2d = logits_out.defined() ? logits_out.view({-1, weight.size(0)}) : torch::empty({0}, weight.options());
  return MyLCE::apply(h, weight, targets, out2d);
}
}  // namespace
TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) TORCH_CHECK(data.next(&batches[step]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  // On the GPU every layer recomputes its activations, so that this sketch's
  // unchunked loss head fits a Qwen2.5-7B shape beside them (no effect on the numerics).
  if (device.is_cuda()) model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, true));
  auto lmw = model->lm_head_weight();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool last = step == num_steps - 1;
    const int64_t first_stale = std::max<int64_t>(1, num_steps - STALE_LAST);  // a one-step call (warmup) has nothing to reuse
    g_stale = step >= first_stale;
    g_keep = step == first_stale - 1;
    torch::Tensor logits;
    if (last) logits = torch::empty({B, S - 1, model->config.vocab_size}, torch::TensorOptions().dtype(lmw.scalar_type()).device(device));
    auto h = model->hidden_states(batch);
    loss = my_lce(h, lmw, batch, logits);
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
