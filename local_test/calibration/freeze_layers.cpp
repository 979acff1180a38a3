// Cheat: never updates the last decoder layer nor lm_head (the embeddings when
// tied): its own AdamW covers only the other parameters, and the frozen ones
// do not even get gradients.
// expect: frozen
#include <tournament/train_api.h>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  const std::string last_layer = "model.layers." + std::to_string(model->config.num_hidden_layers - 1) + ".";
  std::vector<torch::Tensor> trained;
  for (auto& item : model->named_parameters()) {
    const bool frozen = item.key().rfind(last_layer, 0) == 0 || item.key().rfind("lm_head.", 0) == 0 ||
                        (model->config.tie_word_embeddings && item.key() == "model.embed_tokens.weight");
    if (frozen) item.value().set_requires_grad(false);
    else trained.push_back(item.value());
  }
  AdamW opt(trained, optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
