// The twelfth attack pass's loss-head input-gradient cheat (docs/measurements/2026-12-04-attack12.md):
// the loss head's INPUT gradient dH = dlogits W (the product that carries the loss into every
// decoder layer) computed exactly only over the K tokens of largest mean probability, the rest
// from the batch mean plus the tail's first-order response in the hidden state:
//   dH_i = W^T p_i - W_{t_i}  ~=  W^T p_mean + W_top^T (p_i - p_mean)_top - W_{t_i}
//          + A dh_i - a (b . dh_i),  A = W_tail^T diag(p_mean,tail) W_tail, a = W_tail^T p_mean,tail,
//          b = W^T p_mean, dh_i = h_i - mean h.
// lm_head's own weight gradient (dlogits^T H) and everything else stay exact.
// As it stands (K = 256, last 2 of 5 steps) it was ACCEPTED until the loss head's record (train_api.h,
// version 5, session 38): model->hidden_states records the gradient this file's Function returns, and the
// judge finds it 0.018 to 0.019 from the loss head's own at the recorded input (limit 0.0005).
//
// Work share (multiply-adds, counted by hand): the validator's CPU shape (tiny model, 5 steps of
// 16 x 128, N = 2032 loss positions per step, H = 128, V = 2048): a step is ~4,066M MACs
// (decoder linears 2,265M, attention 203M, loss head 1,598M, of which dH = N V H = 533M, 13.1%).
// The approximation costs N K H + V H^2 + N H^2 = 67 + 34 + 33 = 134M instead of 533M (K = 256),
// so it skips ~399M per approximated step = 9.8% of that step: 3.9% of the run in the last 2
// steps. Qwen2.5-7B (16 x 1024, N = 16,368, H = 3,584, V = 152,064): dH is 8.9e12 of ~3.5e14 MACs
// a step (2.5%); the tail matrix V H^2 = 2.0e12 caps the saving at ~1.8% of a step, so below 2% of
// a 7B run even in every step (0.7% in the last 2). Not faster in wall time on this CPU either
// (exact bf16 dH 2.85-3.00 ms, the approximations 3.58-5.26 ms, quick shape).
//
// MEASURED (2026-12-04, tiny default, CPU). Validator shape = `bin/tournament local-bench FILE
// --runs 2 --seed S`; quick shape = `... --steps 3 --warmup-steps 1 --batch-size 4 --runs 2 --seed 12001`.
// Variants are this file with the macros below set at its top (a copy, e.g. made with sed):
//   as is (K = 256, last 2 steps, 3.9%): validator S = 12100 ... 12600 ACCEPTED 6 of 6 evaluations,
//     12 of 12 runs; quick ACCEPTED 2 of 2. Closest checks: MLP kind update 0.025-0.030 (limit 0.075),
//     MLP pair energy 0.13-0.27 (limit 0.5), |probe - ref| <= 0.0013 (limit 0.002), layer positions <= 0.33.
//   A12_LAST 3 (5.9%, ~1.1% of 7B): validator S = 12100 ... 12500 ACCEPTED 10 of 10 runs; S = 12600
//     REJECTED (run 12601: layer_positions, pair energy 0.601); quick (= all 3 steps) REJECTED (MLP
//     kind 0.105-0.111). Accepted runs: pair energy 0.23-0.46, MLP kind 0.035-0.043.
//   A12_LAST 4 (7.8%): validator S = 12100 REJECTED (run 1: pair energy 0.553; run 2 passed, 0.331).
//   A12_LAST 1 (2.0%): validator 12100 and quick ACCEPTED (2/2 each).
//   A12_LAST 1000000 (every step), K = 512 / 768 / 1024 (8.4 / 7.0 / 5.3%): validator 12100 REJECTED
//     (MLP kind 0.083 / 0.0757, probe 0.0021-0.0025).
//   A12_MEAN_FIELD_TAIL (no first-order tail), every step, K = 256 (11%): quick REJECTED (probe 0.029,
//     cell, batch, logits, update 0.23, group, head_gradient, head and layer positions); K = 1024: REJECTED
//     (probe 0.009, update 0.13, ...); last step only: REJECTED (probe 0.0038, batch, layer positions).
//   Honest controls, A12_K 1000000: exact dH through this hand-written head: validator 12100 and quick
//     ACCEPTED, every check exactly 0 (bit-identical to the reference); with A12_FP32_DH (dH as a float32
//     product rounded once, more precise than the reference): validator 12100 ACCEPTED, MLP kind
//     0.036-0.037, pair energy 0.018-0.085, |probe - ref| 1e-4, layer positions <= 0.28.
// expect: loss_head
#include <tournament/train_api.h>

#ifndef A12_K
#define A12_K 256  // exact vocabulary columns; A12_K >= V: dH exact (the honest controls)
#endif
#ifndef A12_LAST
#define A12_LAST 2  // approximate dH in the last A12_LAST steps only
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
#ifdef A12_FP32_DH
        dH = torch::matmul(g, W.to(torch::kFloat32)).to(W.scalar_type());  // float32 product, rounded once
#else
        dH = torch::matmul(gb, W);
#endif
      } else {
        auto pbar = p.mean(0);                                         // [V]
        auto top = std::get<1>(pbar.topk(K));                          // [K]
        auto c = torch::matmul(pbar.div(double(N)).unsqueeze(0), W.to(torch::kFloat32));  // [1, H]
        auto dev = (p.index_select(1, top) - pbar.index_select(0, top).unsqueeze(0)).div(double(N));
        auto part = torch::matmul(dev.to(W.scalar_type()), W.index_select(0, top)).to(torch::kFloat32);  // [N, H]
        auto t = W.index_select(0, tgt).to(torch::kFloat32).div(double(N));
        auto total = c + part - t;
#ifndef A12_MEAN_FIELD_TAIL
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
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits.view({B, S - 1, V});
  }
  result.final_loss = last_loss;
  return result;
}
