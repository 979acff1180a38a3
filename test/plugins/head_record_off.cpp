// Trains exactly as the baseline, with every step recorded, but first
// switches off the hook through which model->hidden_states records the loss
// head's input and gradient (the runner's symbol, declared here by hand, as
// an adversary who reads the engine would): no row of any step is recorded
// and data.record_loss_head() is never called (train_api.h, version 5). The
// run fails for that alone.
// expect: loss_head
#include <tournament/train_api.h>

namespace tournament {
class HeadRecorder;
void set_head_recorder(HeadRecorder* recorder);
}  // namespace tournament

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  set_head_recorder(nullptr);
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss, logits;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto hidden = model->hidden_states(batch);  // [B, S, H]
    if (step == num_steps - 1) logits = torch::empty({batch.size(0), batch.size(1) - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batch, logits);
    loss.backward();
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
