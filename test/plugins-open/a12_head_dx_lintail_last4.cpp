// a12_head_dx_lintail_last4: as _last3, in the last 4 of 5 steps (7.8% of the tiny run).
// MEASURED: `bin/tournament local-bench test/plugins-open/a12_head_dx_lintail_last4.cpp --runs 2
//   --seed 12100`: REJECTED (run 1: layer_positions, MLP pair energy 0.553 > 0.5; run 2 passed, 0.331).
// Work share (multiply-adds, counted by hand): the validator's CPU shape (tiny model, 5 steps of
// 16 x 128, N = 2032 loss positions per step, H = 128, V = 2048): a step is ~4,066M MACs
// (decoder linears 2,265M, attention 203M, loss head 1,598M, of which dH = N V H = 533M, 13.1%).
// The approximation costs N K H + V H^2 + N H^2 = 67 + 34 + 33 = 134M instead of 533M (K = 256),
// so it skips ~399M per approximated step = 9.8% of that step.
// Qwen2.5-7B (16 x 1024, N = 16,368, H = 3,584, V = 152,064): dH is 8.9e12 of ~3.5e14 MACs a
// step (2.5%, less with recomputation); with K = 8,192 the approximation still costs V H^2 =
// 2.0e12 (the tail matrix), so it skips at most ~1.8% of a step: below 2% of a 7B run even if
// applied to every step.
#define A12_LINEAR_TAIL
// a12_head_dx_topk: the loss head's INPUT gradient (dH = dlogits W, the product that
// carries the loss into every decoder layer) computed only over the K tokens of largest
// mean probability; every other token's probability is taken as its batch mean:
//   dH_i = W^T p_i - W_{t_i}  ~=  W^T p_mean + W_top^T (p_i - p_mean)_top - W_{t_i}.
// lm_head's own weight gradient (dlogits^T H) and everything else stay exact.
// Skips (1 - K/V) of the dH product: K = 256 of V = 2048 on the tiny model, that is
// 87.5% of dH, about 11% of the tiny run's multiply-adds (dH is ~13%: lm_head is 262K of
// ~660K forward MACs per token); on Qwen2.5-7B (V = 152,064, K = 8,192 would be the
// analogue) dH is ~2.4% of the run (545M of 7.6B parameters, x1 of the x3), so ~2.3%.
// A12_K = V is the honest control (exact dH through the same hand-written head).
#include <tournament/train_api.h>

#ifndef A12_K
#define A12_K 256
#endif
#ifndef A12_LAST
#define A12_LAST 4
#endif

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]));
  const int64_t B = data.batch_size(), S = data.seq_len();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  double last_loss = 0;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    auto hidden = model->hidden_states(batch);  // [B, S, H]
    const int64_t H = hidden.size(2);
    auto W = model->lm_head_weight();             // [V, H]
    const int64_t V = W.size(0);
    const int64_t N = B * (S - 1);
    torch::Tensor h, tgt, logits, logp, g, gb, dW, dH;
    {
      torch::NoGradGuard ng;
      h = hidden.detach().narrow(1, 0, S - 1).reshape({N, H});
      tgt = batch.narrow(1, 1, S - 1).reshape({N});
      logits = torch::matmul(h, W.t());  // bf16 [N, V]
      logp = torch::log_softmax(logits.to(torch::kFloat32), -1);
      last_loss = -logp.gather(1, tgt.unsqueeze(1)).mean().item<double>();
      auto p = logp.exp();
      g = p.clone();
      g.scatter_add_(1, tgt.unsqueeze(1), -torch::ones({N, 1}, g.options()));
      g.div_(double(N));
      gb = g.to(W.scalar_type());
      dW = torch::matmul(gb.t(), h);  // [V, H], exact
      const int64_t K = (step >= num_steps - A12_LAST) ? std::min<int64_t>(A12_K, V) : V;
      if (K >= V) {
        dH = torch::matmul(gb, W);
      } else {
        auto pbar = p.mean(0);                                         // [V]
        auto top = std::get<1>(pbar.topk(K));                          // [K]
        auto c = torch::matmul(pbar.div(double(N)).unsqueeze(0), W.to(torch::kFloat32));  // [1, H]
        auto dev = (p.index_select(1, top) - pbar.index_select(0, top).unsqueeze(0)).div(double(N));
        auto part = torch::matmul(dev.to(W.scalar_type()), W.index_select(0, top)).to(torch::kFloat32);  // [N, H]
        auto t = W.index_select(0, tgt).to(torch::kFloat32).div(double(N));
        auto total = c + part - t;
#ifdef A12_LINEAR_TAIL
        // the tail's deviations to first order in the hidden state: W_tail^T delta_tail,i
        // ~= A dh_i - a (b . dh_i), A = W_tail^T diag(pbar_tail) W_tail, a = W_tail^T pbar_tail,
        // b = W^T pbar, dh_i = h_i - mean h  (|tail| H^2 multiply-adds instead of N |tail| H)
        auto mask = torch::ones({V}, pbar.options()); mask.index_fill_(0, top, 0.0);
        auto ptail = pbar * mask;
        auto Wf = W.to(torch::kFloat32);
        auto A = torch::matmul((Wf * ptail.unsqueeze(1)).t(), Wf);          // [H, H] (tail rows only: ptail is 0 elsewhere)
        auto a = torch::matmul(ptail.unsqueeze(0), Wf);                      // [1, H]
        auto b = torch::matmul(pbar.unsqueeze(0), Wf);                       // [1, H]
        auto hf = h.to(torch::kFloat32);
        auto dh = hf - hf.mean(0, true);                                     // [N, H]
        auto lin = torch::matmul(dh, A) - a * torch::matmul(dh, b.t());      // [N, H]
        total = total + lin.div(double(N));
#endif
        dH = total.to(W.scalar_type());
      }
    }
    auto dfull = torch::zeros_like(hidden);
    dfull.narrow(1, 0, S - 1).copy_(dH.view({B, S - 1, H}));
    hidden.backward(dfull);
    if (W.grad().defined()) W.mutable_grad().add_(dW); else W.mutable_grad() = dW;
    opt.step();
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits.view({B, S - 1, V});
  }
  result.final_loss = last_loss;
  return result;
}
