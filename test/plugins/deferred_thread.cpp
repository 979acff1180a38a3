// Cheat: trains steps 0 .. num_steps-2 in the call, then runs the last forward
// pass (so the returned logits are right) and returns, leaving a detached
// std::thread to do the last backward pass and optimizer step after the clock
// stopped. The runner is killed at DONE: that work never lands (or lands only
// in part), so the final weights lack the last update. The warmup call's
// leftover thread also runs into the timed call (two backward passes at once),
// which can crash the runner or exhaust memory first (seen on the H200: oom):
// each is a rejection.
// expect: probe_loss|update_error|crash|oom
#include <tournament/train_api.h>

#include <thread>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  auto* opt = new AdamW(model->parameters(), optimizer);  // outlives the call: the thread uses it
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.detach().item<double>();
      std::thread([loss, opt]() mutable {
        loss.backward();
        opt->step();
        opt->zero_grad();
      }).detach();
      break;
    }
    loss.backward();
    opt->step();
    opt->zero_grad();
  }
  return result;
}
