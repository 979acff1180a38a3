// Honest variant: the loss is computed by hand, log_softmax in float32 and the
// mean negative log-likelihood of the next tokens, instead of causal_lm_loss.
// The same quantity, another formulation.
// expect: pass
#include <tournament/train_api.h>

using namespace tournament;

static torch::Tensor next_token_nll(const torch::Tensor& logits, const torch::Tensor& ids) {
  const int64_t S = ids.size(1);
  auto logp = torch::log_softmax(logits.narrow(1, 0, S - 1).to(torch::kFloat32), -1);  // [B, S-1, V]
  auto targets = ids.narrow(1, 1, S - 1).unsqueeze(-1);                                 // [B, S-1, 1]
  return -logp.gather(-1, targets).mean();
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    auto loss = next_token_nll(logits, batch);
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
