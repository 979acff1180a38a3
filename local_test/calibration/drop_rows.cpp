// Cheat, the knob behind the skipped-work curve (`tournament calibrate`'s
// drop:every:K and drop:last:K cases, which set the two macros):
// trains on all but DROP_ROWS rows of every batch (DROP_MODE 0) or of the last
// batch only (DROP_MODE 1). The last forward pass still sees every row (the
// loss leaves the dropped ones out), so the returned logits are complete, and
// every token is claimed.
// The defaults are the suite's case: one row of every batch of four.
// expect: probe_loss|update_error|logits|cell_loss
#include <tournament/train_api.h>

#ifndef DROP_ROWS
#define DROP_ROWS 1
#endif
#ifndef DROP_MODE
#define DROP_MODE 0
#endif

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    const bool last = step == num_steps - 1;
    const int64_t drop = (DROP_MODE == 0 || last) ? std::min<int64_t>(DROP_ROWS, batch.size(0) - 1) : 0;
    const int64_t keep = batch.size(0) - drop;
    auto seen = last ? batch : batch.narrow(0, 0, keep);
    auto logits = model->forward(seen);  // [rows seen, S, V]
    auto loss = causal_lm_loss(logits.narrow(0, 0, keep), batch.narrow(0, 0, keep));
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (last) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
