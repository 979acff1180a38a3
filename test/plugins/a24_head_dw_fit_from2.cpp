// Attack pass 24 (session 38, fresh context, CPU, against the loss head's record, 8e34dc9): the twenty-third
// pass's file (a23_head_tail_fit.cpp) with the loss head's INPUT gradient computed exactly, so the loss head's
// record is honest (it reads 0), and only lm_head's WEIGHT gradient from the fit: each row's TOPK largest-logit
// entries and its target exact, the rest by a per-column linear fit (W C^T with C = H^T (H - hbar)), in steps 2 on
// (step 1 exact: its update is lr times the gradient's sign, which the trajectory does not read, and a fitted
// gradient's sign flips there showed on batch 1's head positions). The fit's input-gradient part is still computed
// and left unused in this quick edit; the shares count what a trimmed version would skip.
// Share (multiply-adds, by hand): the dW product less its exact quarter (TOPK 512 of V 2048) and the fit, in 4 of 5
// steps: about 6.6% of the tiny run; about 1.5% of a 7B run by arithmetic (the fit's V H^2 is 22% of the product
// it replaces there; not run at 7B).
// Measured against 8e34dc9 (`bin/tournament local-bench <this file> --runs 2 --seed S`): ACCEPTED 4 of 6 runs
// (S = 24020, 24040; 24050 REJECTED by head positions 1.93 and 2.01 against 1.62); lm_head's trajectory 0.39 to
// 0.61 against 1.25, the record 0.
// Session 38's answer: lm_head's step judged from the run's own recorded loss-head input, which takes the honest
// forward's rounding out of lm_head's reading (the tuned example 0.23 to 0.34 before, 0 since), and
// head_trajectory_excess from 1.25 to 0.16 (this file then reads 0.47 to 0.87 in the validator's shape and the suite's) (README, Verification, "The loss head's record").
// expect: trajectory|head_positions
#include <tournament/train_api.h>
#include <algorithm>
#include <cstdlib>

using namespace tournament;

#ifndef TOPK
#define TOPK 512
#endif
#ifndef LINEAR
#define LINEAR 1
#endif
#ifndef HEAD_DW
#define HEAD_DW 1
#endif
#ifndef CHEAT_FROM
#define CHEAT_FROM 1
#endif

namespace {

struct HeadCE : public torch::autograd::Function<HeadCE> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out, int64_t cheat, int64_t seed) {
    const int64_t N = hidden.size(0), V = weight.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    auto logits = matmul_acc32(hidden, weight.t());  // [N, V] bf16
    if (logits_out.numel() > 0) logits_out.copy_(logits);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);
    auto t = targets.unsqueeze(1);
    auto loss = -logp.gather(1, t).sum() * inv_n;
    auto grad = logp.exp_().mul_(inv_n);
    grad.scatter_add_(1, t, torch::full({N, 1}, -inv_n, grad.options()));
    auto grad_low = grad.to(weight.scalar_type());  // [N, V]
    torch::Tensor d_hidden, d_weight = matmul_acc32(grad_low.t(), hidden).to(weight.scalar_type());  // exact
    d_hidden = matmul_acc32(grad_low, weight);  // attack 24: always exact (the record is honest)
    if (cheat) {
      // The loss head's input gradient: exact on each row's TOPK largest logits and its target,
      // the rest of the row (small softmax entries) by its column mean over the batch's rows.
      auto idx = std::get<1>(logits.topk(TOPK, 1));                       // [N, K]
      auto sel = torch::zeros({N, V}, grad.options().dtype(torch::kBool));
      sel.scatter_(1, idx, true);
      sel.scatter_(1, t, true);
      auto gl = grad_low.to(torch::kFloat32);
      auto hf = hidden.to(torch::kFloat32), wf = weight.to(torch::kFloat32);
      auto hbar = hf.mean(0, true);                                          // [1, H]
      auto zbar = matmul_acc32(hbar.to(weight.scalar_type()), weight.t()).to(torch::kFloat32);  // [1, V]
      auto dz = logits.to(torch::kFloat32) - zbar;                           // [N, V]
      // per column, over the rows where it is in the tail: R ~ alpha + beta dz (least squares)
      auto m = (~sel).to(torch::kFloat32);
      auto rest = gl * m;
      auto n = m.sum(0), Sz = (m * dz).sum(0), Szz = (m * dz * dz).sum(0), Sr = rest.sum(0), Srz = (rest * dz).sum(0);
      auto den = n * Szz - Sz * Sz;
      auto beta = torch::where(den > 0, (n * Srz - Sz * Sr) / den.clamp_min(1e-30), torch::zeros_like(den));
      auto alpha = torch::where(n > 0, (Sr - beta * Sz) / n.clamp_min(1), torch::zeros_like(n));
      if (!LINEAR) { beta.zero_(); alpha = Sr / double(N); }
      // the model over every entry: sum_v (alpha_v + beta_v dz_iv) w_v = A + (h_i - hbar) W^T diag(beta) W
      auto A = matmul_acc32(alpha.unsqueeze(0), wf);                         // [1, H]
      auto mf = A.expand({N, -1}).clone();
      if (LINEAR) {
        auto Mb = matmul_acc32(wf.t() * beta.unsqueeze(0), wf);              // [H, H]
        mf += matmul_acc32(hf - hbar, Mb);
      }
      // selected entries: their exact value less the model's there
      auto gk = gl.gather(1, idx) - (alpha.index_select(0, idx.reshape({-1})).view({N, TOPK}) +
                                    beta.index_select(0, idx.reshape({-1})).view({N, TOPK}) * dz.gather(1, idx));
      auto wk = weight.index_select(0, idx.reshape({-1})).view({N, TOPK, -1}).to(torch::kFloat32);  // [N, K, H]
      auto dsp = torch::bmm(gk.unsqueeze(1), wk).squeeze(1);                 // [N, H]
      auto in_top = (idx == t).any(1, true);                                 // [N, 1]
      auto tt = t.squeeze(1);
      auto gt = (gl.gather(1, t) - (alpha.index_select(0, tt) + beta.index_select(0, tt) * dz.gather(1, t).squeeze(1)).unsqueeze(1))
                    .masked_fill(in_top, 0.0);                               // [N, 1]
      dsp += gt * weight.index_select(0, tt).to(torch::kFloat32);
      (void)dsp; (void)mf;
      if (HEAD_DW) {
        // lm_head's own gradient the same way: sum_i (alpha_v + beta_v dz_iv) h_i over every entry
        // = alpha_v sum_i h_i + beta_v (sum_i h_i (h_i - hbar)^T) w_v, plus the selected entries' exact
        // value less the model's there (N (K + 1) rows of h scattered into their columns).
        auto C = matmul_acc32(hf.t(), hf - hbar);                            // [H, H]
        auto dwf = alpha.unsqueeze(1) * hf.sum(0).unsqueeze(0) + beta.unsqueeze(1) * matmul_acc32(wf, C.t());  // [V, H]
        auto rows = torch::arange(N, idx.options()).unsqueeze(1).expand({N, TOPK}).reshape({-1});
        dwf.index_add_(0, idx.reshape({-1}), gk.reshape({-1, 1}) * hf.index_select(0, rows));
        dwf.index_add_(0, tt, gt * hf);
        d_weight = dwf.to(weight.scalar_type());
      }
    }
    ctx->save_for_backward({d_hidden, d_weight});
    return loss;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto g = grad_out[0];
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor head_loss(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids,
                        torch::Tensor logits_out, bool cheat, int64_t seed) {
  const int64_t B = ids.size(0), S = ids.size(1), H = hidden.size(-1);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  auto out2d = torch::empty({0}, weight.options());
  if (logits_out.defined()) out2d = logits_out.view({-1, weight.size(0)});
  return HeadCE::apply(h, weight, targets, out2d, cheat ? 1 : 0, seed);
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
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    auto hidden = model->hidden_states(batch);
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = head_loss(hidden, model->lm_head_weight(), batch, logits, step >= CHEAT_FROM, 1234 + step);
    loss.backward();
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
