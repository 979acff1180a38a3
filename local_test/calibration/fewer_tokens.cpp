// Cheat: the last step's loss (and so its gradient and update) covers only the
// first half of the batch's rows; the forward pass still sees all rows, so the
// returned logits have the right shape and values, and every token is claimed.
// expect: probe_loss|update_error|cell_loss
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
    auto logits = model->forward(batch);
    const bool last = step == num_steps - 1;
    const int64_t rows = last ? std::max<int64_t>(1, batch.size(0) / 2) : batch.size(0);
    auto loss = causal_lm_loss(logits.narrow(0, 0, rows), batch.narrow(0, 0, rows));
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (last) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
