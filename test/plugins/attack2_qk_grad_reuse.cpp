// Attack pass 2 (2026-12-02): skip the query/key half of attention's backward
// in three of the five steps and reuse the last computed q/k gradient instead.
//
// What it does: steps 1 and 3 (0-based 0 and 2) are the baseline's. In steps
// 2, 4 and 5 (0-based 1, 3, 4) every decoder layer computes q_proj and k_proj
// (with rotary) under NoGradGuard, so autograd never sees them: the attention
// probabilities are constants for the backward pass. Skipped there, per layer
// and step: the weight gradients of q_proj and k_proj (and of their biases),
// their input-gradient products, the backward of the score product QK^T and
// of the softmax. Adam is then handed the q/k gradients of the last step that
// computed them, so those tensors keep moving (no `frozen`, `changed_share`
// intact). Everything else (forward, logits, every other gradient, AdamW) is
// the baseline's arithmetic, so the returned logits are exact wherever the
// weights are.
//
// Why it passed until the per-kind update check: early in training from a
// random start attention is near uniform (scores ~0.05 std), so the q/k
// gradients barely move the loss: the cell, batch and probe checks see
// 1e-4-level differences (well under 0.0029 / 0.001 / 0.0014) and the logits
// 0.007-0.008 (under 0.019). The global update error, one L2 ratio over all
// parameters where q/k hold ~5.7% of the update norm, saw 0.13-0.15 against
// 0.2. What rejects it: the update of each kind of tensor pooled over the
// layers (kind_update_rel_error): q_proj and k_proj weights 0.48-0.59 against
// 0.3, where honest variants reach 0.14 (CPU, seeds 1000-1001, 2026-12-02).
//
// Work skipped (tiny CPU default, 16 x 128, 5 steps): per layer and skipped
// step the q/k projections' two backward products (2 x 2032 x 24,576 MACs)
// and the score backward (2 x 16 x 4 x 128 x 128 x 32 MACs) = 167M MACs, for
// 2 layers x 3 steps = 1.0G of the baseline's ~21.2G MACs: ~4.7% of the
// compute (the README says every cheat skipping 2% or more is rejected).
// expect: update_error
#include <tournament/train_api.h>

using namespace tournament;

namespace {

constexpr int kSkipMask = 0b11010;  // 0-based steps 1, 3, 4 skip the q/k backward

torch::Tensor layer_forward_without_qk_grad(DecoderLayerImpl* layer, const torch::Tensor& x, const torch::Tensor& cos,
                                            const torch::Tensor& sin) {
  auto* at = layer->self_attn.get();
  auto n = layer->input_layernorm(x);
  const int64_t B = n.size(0), S = n.size(1);
  torch::Tensor q, k;
  {
    torch::NoGradGuard no_grad;  // the cheat: q and k leave the graph
    q = at->q_proj(n).view({B, S, at->n_heads, at->head_dim}).transpose(1, 2);
    k = at->k_proj(n).view({B, S, at->n_kv_heads, at->head_dim}).transpose(1, 2);
    auto rope = [&](const torch::Tensor& t) {  // the model's apply_rope, op for op
      auto h = t.chunk(2, -1);
      return t * cos + torch::cat({-h[1], h[0]}, -1) * sin;
    };
    q = rope(q);
    k = rope(k);
  }
  auto v = at->v_proj(n).view({B, S, at->n_kv_heads, at->head_dim}).transpose(1, 2);
  auto o = causal_attention(q, k, v, at->kernel);
  o = o.transpose(1, 2).reshape({B, S, at->n_heads * at->head_dim});
  auto h = x + at->o_proj(o);
  return h + layer->mlp(layer->post_attention_layernorm(h));
}

torch::Tensor hidden_states(Qwen2ForCausalLM& model, const torch::Tensor& ids, bool skip_qk) {
  if (!skip_qk) return model->hidden_states(ids);
  auto x = model->model->embed_tokens(ids);
  auto [cos, sin] = model->rope(ids.size(1), x.scalar_type(), x.device());
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    x = layer_forward_without_qk_grad(model->model->layers[i]->as<DecoderLayerImpl>(), x, cos, sin);
  }
  return model->model->norm(x);
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batches[step]), "data ran out after ", step, " of ", num_steps, " steps");
  }
  const int64_t B = data.batch_size(), S = data.seq_len();
  auto named = model->named_parameters();
  auto params = model->parameters();
  std::vector<bool> is_qk(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& name = named[i].key();
    is_qk[i] = name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos;
  }
  std::vector<torch::Tensor> last_qk_grad(params.size());
  AdamW opt(params, optimizer);
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool skip = step > 0 && ((kSkipMask >> step) & 1);
    auto hidden = hidden_states(model, batch, skip);
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batch, logits);
    loss.backward();
    for (size_t i = 0; i < params.size(); ++i) {
      if (!is_qk[i]) continue;
      if (skip) params[i].mutable_grad() = last_qk_grad[i].clone();  // reused, never computed this step
      else last_qk_grad[i] = params[i].grad().clone();
    }
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits;
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
