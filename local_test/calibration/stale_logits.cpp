// Cheat: trains honestly but returns the logits of the first step's forward
// pass instead of the last one's.
// expect: logits
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
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == 0) result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1).clone();
    result.final_loss = loss.item<double>();
  }
  return result;
}
