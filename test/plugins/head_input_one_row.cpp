// A forward that is wrong in one row only: the loss head's input of each
// step's first row is 3% off (scaled by 1.03), the row trained and recorded
// consistently with it (its gradient is the loss head's own at that input,
// so lm_head's step, judged from the recorded input, reads nothing). Over a
// batch of 4 rows the error is about 0.015 relative, under the 0.02 that
// head_input_error allows; read row by row it is 0.03 (attack pass 27's
// suspicion: an error confined to a few rows, diluted by the batch's others).
// expect: loss_head
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
    auto scale = torch::ones({batch.size(0), 1, 1}, hidden.options());  // [B, 1, 1]
    scale[0] = 1.03;
    auto off = hidden * scale;  // [B, S, H]: the first row 3% off
    off.retain_grad();
    if (step == num_steps - 1) logits = torch::empty({batch.size(0), batch.size(1) - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(off, model->lm_head_weight(), batch, logits);
    loss.backward();
    data.record_loss_head(batch, off.detach(), off.grad());  // after hidden_states' own record: this one is kept
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
