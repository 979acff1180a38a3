// The local tournament's "faster honest variant": the baseline, except that
// the output projection (hidden -> vocabulary, the largest matrix multiply of
// the tiny model) runs in float32 on bf16 inputs. On a CPU without native bf16
// arithmetic that is much faster than the bf16 kernel, and it rounds to the
// same bf16 logits up to summation order, well inside the verification
// tolerance. Everything else is the baseline's.
#include <tournament/train_api.h>

using namespace tournament;

static torch::Tensor forward_fp32_head(Qwen2ForCausalLM& model, const torch::Tensor& ids) {
  auto x = model->model->embed_tokens(ids);
  auto [cos, sin] = model->rope(ids.size(1), x.scalar_type(), x.device());
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    x = model->model->layers[i]->as<DecoderLayerImpl>()->forward(x, cos, sin);
  }
  x = model->model->norm(x);
  return torch::nn::functional::linear(x.to(torch::kFloat32), model->lm_head_weight().to(torch::kFloat32))
      .to(x.scalar_type());
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out after ", step, " of ", num_steps, " steps");
    auto logits = forward_fp32_head(model, batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
