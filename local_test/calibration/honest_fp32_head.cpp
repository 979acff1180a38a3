// Honest variant: the whole loss head in float32. The reference rounds the
// logits into bf16 before its float32 log-softmax and rounds the logits'
// gradient into bf16 before the two products; here hidden and lm_head's
// weight are taken to float32, and the logits, their gradient and both
// products stay float32 until the gradients round into the bf16 parameters
// and the bf16 hidden states. More accurate than the reference, and rounded
// otherwise: the loss head's record (train_api.h, version 5) must allow it.
// expect: pass
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    const int64_t S = batch.size(1);
    auto hidden = model->hidden_states(batch);                                     // [B, S, H] bf16
    auto logits = torch::matmul(hidden.to(torch::kFloat32),
                                model->lm_head_weight().to(torch::kFloat32).t());  // [B, S, V] float32
    auto logp = torch::log_softmax(logits.narrow(1, 0, S - 1), -1);                // [B, S-1, V]
    auto loss = -logp.gather(-1, batch.narrow(1, 1, S - 1).unsqueeze(-1)).mean();
    loss.backward();
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, S - 1).to(model->lm_head_weight().scalar_type());
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
