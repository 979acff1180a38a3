// a12_head_dx_sparse_resid: like a12_head_dx_topk, but the tail model is the softmax's full
// first-order response (A = W^T diag(pbar) W over every token) and each position's K largest
// residual entries (p - pbar - lin) are multiplied exactly (sparse product). Every step.
// Skips (tiny, K = 256) the same ~9.8% of every step; K = 512: 8.2%; K = 1024: 4.9%.
// MEASURED, validator shape, `bin/tournament local-bench <copy with A12_K = K> --runs 2 --seed 12100`:
//   K = 128 REJECTED (MLP 0.083, probe 0.0021); K = 256 REJECTED (MLP 0.079, probe 0.0025,
//   layer_positions); K = 512 REJECTED (probe 0.0038, MLP 0.082, pair energy 0.57-0.62);
//   K = 1024 REJECTED (probe 0.0039 / 0.0026, pair energy 0.50); K = 2047 (near exact) ACCEPTED
//   (1 run, MLP 0.037 = the fp32 control): dropping the small residuals is biased (the probe
//   ends below the reference's, more so with larger K).
// (Original description of the parent follows.)
// a12_head_dx_topk-derived: the loss head's INPUT gradient (dH = dlogits W, the product that
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
        // W^T g_i = W^T pbar/N + W^T (p_i - pbar)/N - W_{t_i}/N, and p_i - pbar =
        // lin_i + r_i: lin_i the softmax's first-order response to dz_i = z_i - mean z
        // (lin_iv = pbar_v (dz_iv - pbar . dz_i)), whose product with W is
        // A dh_i - a (b . dh_i) with A = W^T diag(pbar) W, a = b = W^T pbar (H^2 work per
        // position, V H^2 per step), and r_i the residual, of which only each position's
        // K largest entries (by |r|) are multiplied with W (a sparse product, N K H).
        auto pbar = p.mean(0);                                        // [V]
        auto Wf = W.to(torch::kFloat32);
        auto b = torch::matmul(pbar.unsqueeze(0), Wf);                // [1, H]
        auto A = torch::matmul((Wf * pbar.unsqueeze(1)).t(), Wf);     // [H, H]
        auto hf = h.to(torch::kFloat32);
        auto dh = hf - hf.mean(0, true);                              // [N, H]
        auto lin_h = torch::matmul(dh, A) - b * torch::matmul(dh, b.t());   // [N, H]
        auto zf = logits.to(torch::kFloat32);
        auto dz = zf - zf.mean(0, true);                              // [N, V]
        auto lin = pbar.unsqueeze(0) * (dz - torch::matmul(dz, pbar.unsqueeze(1)));  // [N, V]
        auto r = p - pbar.unsqueeze(0) - lin;                         // [N, V]
        auto idx = std::get<1>(r.abs().topk(K, 1));                   // [N, K]
        auto vals = r.gather(1, idx);                                 // [N, K]
        auto rows = torch::arange(N, idx.options()).unsqueeze(1).expand({N, K});
        auto sp = torch::sparse_coo_tensor(torch::stack({rows.reshape({-1}), idx.reshape({-1})}), vals.reshape({-1}), {N, V});
        auto part = torch::mm(sp, Wf);                                // [N, H]
        auto t = Wf.index_select(0, tgt);
        dH = ((b + lin_h + part - t).div(double(N))).to(W.scalar_type());
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
