// Trains exactly as the baseline, calls data.wait_recorded() before its first
// optimizer step (so it takes the wait for each record on itself,
// train_api.h, version 4) and then forgets it. On CUDA its next optimizer
// step would write the parameters while they are still being copied out; the
// runner fails the run at the next data.step_done(), on every device, with a
// message that names the call.
// expect: crash
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    loss = causal_lm_loss(logits, batch);
    loss.backward();
    if (step == 0) data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
  }
  result.final_loss = loss.item<double>();
  return result;
}
