// Honest variant: each step runs the batch as two half-batches with gradient
// accumulation (each half's mean loss weighted by its share of the rows, so
// the accumulated gradient is the full batch's), then one optimizer step:
// every token, one update per batch. The returned logits are the two halves'
// joined back together.
// expect: pass
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
    const int64_t B = batch.size(0), first = (B + 1) / 2;
    std::vector<torch::Tensor> logits_parts;
    double step_loss = 0.0;
    for (auto [start, rows] : {std::pair<int64_t, int64_t>{0, first}, {first, B - first}}) {
      if (rows == 0) continue;
      auto part = batch.narrow(0, start, rows);
      auto logits = model->forward(part);
      auto loss = causal_lm_loss(logits, part) * (double(rows) / double(B));
      loss.backward();
      step_loss += loss.item<double>();
      logits_parts.push_back(logits.detach().narrow(1, 0, batch.size(1) - 1));
    }
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = torch::cat(logits_parts, 0);
      result.final_loss = step_loss;
    }
  }
  return result;
}
