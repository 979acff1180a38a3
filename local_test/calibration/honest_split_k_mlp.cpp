// Honest variant: every layer's MLP with its products summed in another
// order, as a GPU's split-K matrix kernels sum them: each of the three
// products (gate, up, down) as the float32 sum of its two halves over the
// inner dimension, rounded once into bf16; the backward is autograd's of
// that, in float32. The same arithmetic as the reference's up to float32
// rounding, so each layer's MLP output and each MLP weight's gradient differ
// from the reference's by one layer's rounding: the floor the MLP's record
// (train_api.h, version 6) must allow. The layers are run by hand (the
// engine's attention and norms), so it records the layers and the loss head itself.
// expect: pass
#include <tournament/train_api.h>

using namespace tournament;
using torch::Tensor;

namespace {

// x [..., K] times w [N, K]^T as two float32 halves over K, summed, rounded into x's dtype: [..., N].
Tensor split_k_linear(const Tensor& x, const Tensor& w) {
  const int64_t K = x.size(-1), half = K / 2;
  auto part = [&](int64_t start, int64_t n) {
    return torch::matmul(x.narrow(-1, start, n).to(torch::kFloat32), w.narrow(1, start, n).to(torch::kFloat32).t());
  };
  return (part(0, half) + part(half, K - half)).to(x.scalar_type());
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  Tensor batch, loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    const int64_t B = batch.size(0), S = batch.size(1);
    auto x = model->model->embed_tokens(batch);                      // [B, S, H]
    auto [cos, sin] = model->rope(S, x.scalar_type(), x.device());   // [S, D] each
    std::vector<std::pair<Tensor, Tensor>> mlp_io;                   // each layer's MLP input and output
    for (size_t i = 0; i < model->model->layers->size(); ++i) {
      auto& layer = *model->model->layers[i]->as<DecoderLayerImpl>();
      auto h = x + layer.self_attn(layer.input_layernorm(x), cos, sin);           // [B, S, H]
      auto in = layer.post_attention_layernorm(h);                                // [B, S, H]
      auto& mlp = *layer.mlp;
      auto act = torch::silu(split_k_linear(in, mlp.gate_proj->weight)) * split_k_linear(in, mlp.up_proj->weight);
      auto out = split_k_linear(act, mlp.down_proj->weight);                      // [B, S, H]
      data.record_layer(static_cast<int64_t>(i), batch, h.detach(), out.detach());
      in.retain_grad();  // for the record's gradients, after backward
      out.retain_grad();
      mlp_io.emplace_back(in, out);
      x = h + out;
    }
    auto hidden = model->model->norm(x);  // [B, S, H]
    hidden.retain_grad();
    Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batch, logits);
    loss.backward();
    data.record_loss_head(batch, hidden.detach(), hidden.grad());
    for (size_t i = 0; i < mlp_io.size(); ++i) {
      data.record_layer_grad(static_cast<int64_t>(i), batch, mlp_io[i].second.grad(), mlp_io[i].first.grad());
    }
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits;
  }
  result.final_loss = loss.item<double>();
  return result;
}
