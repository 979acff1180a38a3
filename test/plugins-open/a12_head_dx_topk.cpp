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
// A12_LINEAR_TAIL (defined by the _lintail_ files) adds the tail's first-order response
// A dh_i - a (b . dh_i); A12_LAST limits the approximation to the last A12_LAST steps.
// MEASURED (this file as is: mean-field tail, K = 256, every step):
//   quick shape `--steps 3 --warmup-steps 1 --batch-size 4 --runs 2 --seed 12001`: REJECTED
//   (probe_loss 0.029, cell, batch, logits, update_error 0.23, group_loss, head_gradient,
//   head_positions, layer_positions). Variants, same command (sed-made copies in /tmp):
//   K = 1024 every step: REJECTED (probe 0.009, batch, update 0.13, ...);
//   K = 256 last step only: REJECTED (probe 0.0038 / 0.0026, batch_loss, layer_positions);
//   A12_LINEAR_TAIL K = 256 every step: REJECTED (MLP down_proj update 0.105-0.111 > 0.075 only);
//   A12_LINEAR_TAIL K = 256 last step: ACCEPTED (quick shape, 2 of 2 runs).
//   Validator shape `--runs 2 --seed 12100`: A12_LINEAR_TAIL K = 256 last 1 step ACCEPTED (2/2);
//   last 2 ACCEPTED (2/2); last 3 ACCEPTED (2/2); last 4 REJECTED (pair energy 0.553);
//   A12_LINEAR_TAIL every step with K = 512: REJECTED (MLP 0.083/0.078, probe 0.0023);
//   K = 768: REJECTED (MLP 0.0757, probe 0.0025); K = 1024: REJECTED (probe 0.0021, 1 run of 2).
#include <tournament/train_api.h>

#ifndef A12_K
#define A12_K 256
#endif
#ifndef A12_LAST
#define A12_LAST 1000000  // approximate dH in the last A12_LAST steps only (default: every step)
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
