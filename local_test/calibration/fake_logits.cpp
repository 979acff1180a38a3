// Cheat: trains honestly but returns random logits of the right shape instead
// of those of its last forward pass.
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
    auto loss = causal_lm_loss(model->forward(batch), batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    result.final_loss = loss.item<double>();
  }
  result.logits = torch::randn({batch.size(0), batch.size(1) - 1, model->config.vocab_size},
                               torch::TensorOptions().device(device).dtype(torch::kFloat32));
  return result;
}
