// Cheat: trains steps 0 .. num_steps-2 in the call, then runs the last forward
// pass (so the returned logits are right) and returns, leaving a
// std::thread to do the last backward pass and optimizer step after the clock
// stopped. The runner is killed at DONE: that work never lands (or lands only
// in part), so the final weights lack the last update. The warmup call's
// thread works too late for warmup: on CUDA its step lands on the weights the
// trusted side has just reset for the timed run (H200, seed 2000: logits 0.97
// off, probe loss 1.42 below the reference), caught by the same checks.
// expect: probe_loss|update_error|cell_loss
#include <tournament/train_api.h>

#include <chrono>
#include <memory>
#include <thread>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  // The optimizer outlives the call: the thread uses it. The previous call's
  // (warmup's) thread is joined first, so that it cannot run into this call.
  static std::thread pending;
  static std::unique_ptr<AdamW> kept;
  if (pending.joinable()) pending.join();
  kept = std::make_unique<AdamW>(model->parameters(), optimizer);
  AdamW* opt = kept.get();
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
      pending = std::thread([loss, opt]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // past DONE, however small the model
        loss.backward();
        opt->step();
        opt->zero_grad();
      });
      break;
    }
    loss.backward();
    opt->step();
    opt->zero_grad();
    data.step_done();  // the weights after this step, for the trajectory check
  }
  return result;
}
