// Attack pass 29 (session 40), its accepted case: against the loss head's record's input
// tolerance (head_input_error 0.021, worst row) together with lm_head being
// judged at the run's OWN recorded input. In every step the loss head runs on
// H' = H with each position's smallest DROP_FRAC of |entries| zeroed (so the
// logits product H' W^T and lm_head's gradient product G^T H' each skip
// DROP_FRAC of their multiply-adds), H' is what is recorded (its input error
// is the sparsification's, about 1.6% at 8%), the record's gradient is exact
// at H' (reads 0), and lm_head's judged step is taken at H' (reads 0). The
// gradient passes straight through to H (not masked), so the layers see
// dH(H'), which at this start differs little from dH(H).
// Share skipped (by arithmetic, no faster as written): 2 of the head's 3
// products x DROP_FRAC: tiny 2 x 13.2% x 0.08 = 2.1% of the run; 7B
// 2 x 2.5% x 0.08 = 0.4% (below the 2% line on the real target).
// Measured: ACCEPTED 4 of 4 (local-bench --runs 2, seeds 29100 and 29200): head_input_error 0.0192 to 0.0200
// against 0.021, every other check far under. An open gap (README, Verification, known gaps): a rule against
// exact zeros where the judge's value is over RMS/16 rejected it, and was removed the same session once the
// thirtieth pass recorded the dropped entries as 1e-30 instead (a30_head_input_tiny_fill.cpp).
// expect: pass (open: the loss head's input tolerance)
#include <tournament/train_api.h>

using namespace tournament;

#ifndef DROP_FRAC
#define DROP_FRAC 0.08
#endif

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) TORCH_CHECK(data.next(&batches[step]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    auto hidden = model->hidden_states(batch);  // [B, S, H]; its own record is overwritten below
    torch::Tensor sparse;
    {
      torch::NoGradGuard ng;
      const int64_t H = hidden.size(2);
      const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(DROP_FRAC * H));
      auto mag = hidden.detach().abs().to(torch::kFloat32);
      auto thr = std::get<0>(mag.kthvalue(k, 2, /*keepdim=*/true));  // [B, S, 1]
      sparse = hidden.detach() * (mag > thr).to(hidden.scalar_type());
    }
    auto seen = hidden + (sparse - hidden).detach();  // H' forward, gradient straight through to H
    seen.retain_grad();
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(seen, model->lm_head_weight(), batch, logits);
    loss.backward();
    data.record_loss_head(batch, seen.detach(), seen.grad());  // after hidden_states' own: this one is kept
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
