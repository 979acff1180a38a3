// Cheat (the third attack pass's, with its cover, in a form that also fits the 7B shape): the
// last optimizer step gets the MLP weights' gradients of the step before it
// (stale) instead of its own; every other tensor gets its exact gradient.
// The attack skips those gradient products (1/3 of the MLP's work in one step
// of five); this version still computes them and throws them away, so its
// numbers are the attack's without its speed. The stale gradients are kept in
// host memory: on the 7B shape they are 10 GB. The cover: the last step's
// lm_head update is applied 1.2 times (lm_head's gradient is exact), which
// pulls the last batch's whole-model loss back under the batch-loss check.
// expect: group_loss
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  std::vector<torch::Tensor> mlp;  // every layer's gate, up and down weights
  for (const auto& item : model->named_parameters()) {
    if (item.key().find(".mlp.") != std::string::npos) mlp.push_back(item.value());
  }
  AdamW opt(model->parameters(), optimizer);
  std::vector<torch::Tensor> stale(mlp.size());
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    const bool last = step == num_steps - 1;
    auto logits = model->forward(batch);  // [B, S, V]
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    for (size_t i = 0; i < mlp.size(); ++i) {
      if (last && step > 0) mlp[i].mutable_grad().copy_(stale[i]);
      else stale[i] = mlp[i].grad().to(torch::kCPU);
    }
    auto head = model->lm_head_weight();
    torch::Tensor before;
    if (last) before = head.detach().clone();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    if (last) {
      torch::NoGradGuard no_grad;
      head.add_((head - before) * 0.2);
    }
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (last) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
