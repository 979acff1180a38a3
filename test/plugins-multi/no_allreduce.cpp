// Cheat, for two ranks (test/multi-rank.test.ts): each rank trains on its own
// share alone, never exchanging gradients. Every token is trained on, but by
// two different models: the ranks' parameters part ways, and rank 0's (the
// ones verified) saw only half of each batch.
// expect: rank_divergence
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device,
                        const OptimizerConfig& optimizer) {
  TORCH_CHECK(distributed().world_size > 1, "no_allreduce is a multi-rank plugin");
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits.narrow(1, 0, batch.size(1) - 1).detach();
  }
  result.final_loss = loss.item<double>();
  return result;
}
