// Honest: the baseline, recording its loss head's input with each row's last
// position zeroed, as a submission that never computes that position would
// (its logits are not trained on and no position attends to it, so its whole
// forward is free to skip: 1/seq_len of the forward). The judge puts its own
// input there (README, Verification, "the loss head's record"); before that,
// this read 1/sqrt(seq_len) on every row (0.088 here) and failed loss_head.
// expect: pass
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss, logits;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto hidden = model->hidden_states(batch);  // [B, S, H]
    const int64_t S = batch.size(1);
    auto keep = torch::ones({1, S, 1}, hidden.options());  // [1, S, 1]
    keep[0][S - 1] = 0;
    auto seen = hidden * keep;  // [B, S, H]: the last position 0
    seen.retain_grad();
    if (step == num_steps - 1) logits = torch::empty({batch.size(0), S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(seen, model->lm_head_weight(), batch, logits);
    loss.backward();
    data.record_loss_head(batch, seen.detach(), seen.grad());  // after hidden_states' own record: this one is kept
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += batch.numel();
  }
  result.logits = logits;
  result.final_loss = loss.item<double>();
  return result;
}
