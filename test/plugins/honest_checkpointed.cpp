// Honest: the baseline with every decoder layer checkpointed (recomputed in
// backward), as the baseline does on a card short of memory: the engine's
// automatic records (train_api.h, versions 5 and 6) must come out of the
// recompute as they do without it (each layer's MLP input and output when its
// forward runs, again when it is recomputed, the output's gradient there).
// expect: pass
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, true));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss, logits;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto hidden = model->hidden_states(batch);  // [B, S, H]
    if (step == num_steps - 1) logits = torch::empty({batch.size(0), batch.size(1) - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batch, logits);
    loss.backward();
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += batch.numel();
  }
  result.logits = logits;
  result.final_loss = loss.item<double>();
  return result;
}
