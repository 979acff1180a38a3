// Cheat: does every forward and backward pass in the call, but queues the last
// optimizer step where it would land after the clock stopped.
//   CUDA: on a side stream, behind about 3 s of matrix multiplies, never
//         joined back to the current stream. Until session 41 the runner
//         waited for the current stream only: DONE came at once, the step was
//         still queued when the runner was killed, and the kill aborted it
//         (measured on the H200, 2026-11-29). Since then the runner waits for
//         every stream of the device, so the step lands on the clock, 3 s
//         later: the run trains as it should and is timed for all of it.
//   CPU:  a thread runs the step after the call returned: the final weights
//         lack the last update. Should it land during the trusted side's
//         teardown or verification instead, the probe loss passes and the
//         memory check after the kill (late_write) fires. The suite runs on
//         the CPU.
// expect: probe_loss|update_error|cell_loss
#include <tournament/train_api.h>

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>
#include <memory>
#include <thread>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  // The optimizer outlives the call: the queued step uses it. The previous
  // call's (warmup's) step is finished first, so that it cannot run into this
  // call: on CUDA the runner synchronised the device after warmup, on CPU its
  // thread is joined here.
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
    loss.backward();
    result.total_tokens += batch.numel();
    if (step < num_steps - 1) {
      opt->step();
      opt->zero_grad();
      continue;
    }
    result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
    result.final_loss = loss.detach().item<double>();
    if (!device.is_cuda()) {
      pending = std::thread([opt]() {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // past DONE: a tiny model's step takes a millisecond
        opt->step();
      });
      break;
    }
    const auto* impl = c10::impl::getDeviceGuardImpl(device.type());
    const c10::Stream side = impl->getStreamFromGlobalPool(device);
    c10::Event grads_ready(device.type());
    grads_ready.record(impl->getStream(device));
    grads_ready.block(side);  // the side stream sees the finished gradients
    c10::StreamGuard on_side(side);
    auto x = torch::randn({16384, 16384}, torch::TensorOptions().dtype(torch::kBFloat16).device(device));
    for (int i = 0; i < 250; ++i) torch::mm(x, x);  // ~12 ms each on an H200: ~3 s in all
    opt->step();
    data.step_done();  // the weights after this step, for the trajectory check
  }
  return result;
}
