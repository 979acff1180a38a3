// Cheat: does every forward and backward pass in the call, but the last
// optimizer step is handed to a detached thread and the call returns at once,
// so the last update would land after the clock stopped. On CUDA this is the
// "queued GPU work" case: the thread enqueues the step's kernels without any
// synchronisation after DONE was sent. On CPU it is the same as
// deferred_thread with a smaller deferred piece (only opt.step()); the harness
// must answer both the same way: the runner is killed at DONE, the update is
// missing (or partial) in the final weights.
// expect: probe_loss|update_error
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
    loss.backward();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.detach().item<double>();
      std::thread([opt]() { opt->step(); }).detach();
      break;
    }
    opt->step();
    opt->zero_grad();
  }
  return result;
}
