// Attack (exploit the tolerance): trains on every token except DROP_ROWS rows
// of each of the first DROP_STEPS batches, which it never forwards (B - 1
// rows instead of B: that much less forward, backward and loss work), keeps
// the last batch whole (the per-row loss check looks only at the last batch)
// and reports the full token count (tokens are not measured, only compared
// with what was served). The CPU tolerances (probe loss 2e-4, update error
// 0.045) were set from "half the rows of the LAST batch"; a smaller skip
// spread over earlier steps moves the probe loss and update less than the
// noise of honest variants such as gradient accumulation.
// Measured (CPU tiny, local-bench --runs 2 --seed 1000, 1 row of each of the
// first 2 steps, 2.5% of the tokens): REJECTED, update error 0.20 and 0.23
// (allowed 0.045), cell_loss 0.0012 / 0.0021, probe 3e-5 / 4.3e-4. The
// tolerance holds: a guard, not a working cheat.
// expect: probe_loss|update_error|cell_loss
#include <tournament/train_api.h>

using namespace tournament;

#ifndef DROP_ROWS
#define DROP_ROWS 1
#endif
#ifndef DROP_STEPS
#define DROP_STEPS 2
#endif

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    result.total_tokens += batch.numel();  // claimed, whether trained or not
    auto used = (step < DROP_STEPS && step < num_steps - 1) ? batch.narrow(0, 0, batch.size(0) - DROP_ROWS) : batch;
    auto logits = model->forward(used);
    auto loss = causal_lm_loss(logits, used);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
