// Cheat: trains only num_steps - 2 steps; the last two batches get a forward
// pass without gradients (the last one's logits are returned), and every
// token is claimed.
// expect: probe_loss|update_error|logits|cell_loss
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
    result.total_tokens += batch.numel();
    if (step >= num_steps - 2) {
      torch::NoGradGuard no_grad;
      auto logits = model->forward(batch);
      result.logits = logits.narrow(1, 0, batch.size(1) - 1);
      result.final_loss = causal_lm_loss(logits, batch).item<double>();
      continue;
    }
    auto loss = causal_lm_loss(model->forward(batch), batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
  }
  return result;
}
