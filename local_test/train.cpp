// The baseline submission, and the official reference the validator compares
// every submission against. Miners: copy this file, make it faster, keep what
// it computes. The contract is in native/include/tournament/train_api.h.
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  // Activations of a 7B model at 16 x 1024 tokens do not fit beside its weights,
  // gradients and optimizer state: recompute every layer in backward on the
  // GPU. The tiny CPU model keeps everything.
  model->set_checkpointed_layers(
      std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));

  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;  // [B, S] int64
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out after ", step, " of ", num_steps, " steps");
    auto logits = model->forward(batch);          // [B, S, V]
    auto loss = causal_lm_loss(logits, batch);    // scalar, float32
    loss.backward();
    opt.step();
    opt.zero_grad();

    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);  // [B, S-1, V]
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
