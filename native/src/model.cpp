// Qwen2 in reading order: config, RMSNorm, rotary embeddings, attention, MLP,
// decoder layer, the model, loss, initialisation. Shapes as in model.h.
#include <tournament/model.h>

#include <c10/util/accumulate.h>

#include <cmath>

#include "compat.h"

namespace tournament {

// ---------------------------------------------------------------- config

void Qwen2Config::validate() const {
  auto positive = [](const char* name, int64_t v) { TORCH_CHECK(v > 0, "config: ", name, " must be > 0, got ", v); };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("max_position_embeddings", max_position_embeddings);
  TORCH_CHECK(hidden_size % num_attention_heads == 0, "config: hidden_size ", hidden_size,
              " is not a multiple of num_attention_heads ", num_attention_heads);
  TORCH_CHECK(num_attention_heads % num_key_value_heads == 0, "config: num_attention_heads ", num_attention_heads,
              " is not a multiple of num_key_value_heads ", num_key_value_heads);
  TORCH_CHECK(head_dim() % 2 == 0, "config: head dim ", head_dim(), " must be even for rotary embeddings");
  TORCH_CHECK(rope_theta > 0 && rms_norm_eps > 0, "config: rope_theta and rms_norm_eps must be > 0");
}

int64_t ParamSpec::numel() const { return c10::multiply_integers(shape); }

// The model itself, built on the meta device (shapes, no memory), names its parameters.
std::vector<ParamSpec> parameter_specs(const Qwen2Config& cfg) {
  Qwen2ForCausalLM meta(cfg, device_allocator(torch::TensorOptions().device(torch::kMeta)), AttentionKernel::kMath);
  std::vector<ParamSpec> s;
  for (const auto& item : meta->named_parameters()) s.push_back({item.key(), item.value().sizes().vec()});
  return s;
}

int64_t Qwen2Config::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameter_specs(*this)) n += p.numel();
  return n;
}

ParamAllocator device_allocator(torch::TensorOptions options) {
  return [options](const std::string&, at::IntArrayRef shape) { return torch::empty(shape, options); };
}

// ---------------------------------------------------------------- linear, embedding

LinearImpl::LinearImpl(const ParamAllocator& alloc, const std::string& name, int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", alloc(name + ".weight", {out, in}));
  if (has_bias) bias = register_parameter("bias", alloc(name + ".bias", {out}));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  return torch::nn::functional::linear(x, weight, bias);
}

EmbeddingImpl::EmbeddingImpl(const ParamAllocator& alloc, const std::string& name, int64_t vocab, int64_t dim) {
  weight = register_parameter("weight", alloc(name + ".weight", {vocab, dim}));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

// ---------------------------------------------------------------- RMSNorm

RMSNormImpl::RMSNormImpl(const ParamAllocator& alloc, const std::string& name, int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", alloc(name + ".weight", {dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // Normalise in float32, scale in the input dtype, as Hugging Face does.
  auto xf = x.to(torch::kFloat32);                                 // [..., H]
  auto var = xf.pow(2).mean(-1, /*keepdim=*/true);                  // [..., 1]
  return weight * (xf * torch::rsqrt(var + eps)).to(x.scalar_type());  // [..., H]
}

// ---------------------------------------------------------------- rotary embeddings

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {  // [..., D] -> [..., D]
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

// x [B, N, S, D], cos/sin [S, D]
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> Qwen2ForCausalLMImpl::rope(int64_t seq_len, torch::Dtype dtype,
                                                                  torch::Device device) {
  if (cos_cache_.defined() && cos_cache_.size(0) >= seq_len && cos_cache_.scalar_type() == dtype &&
      cos_cache_.device() == device) {
    return {cos_cache_.narrow(0, 0, seq_len), sin_cache_.narrow(0, 0, seq_len)};
  }
  const int64_t d = config.head_dim();
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // inv_freq[i] = theta^(-2i/D), in float32 as Hugging Face computes it.
  auto inv_freq = 1.0 / torch::pow(config.rope_theta, torch::arange(0, d, 2, f32.dtype(torch::kInt64)).to(f32) / d);
  auto pos = torch::arange(seq_len, f32);                      // [S]
  auto freqs = torch::outer(pos, inv_freq);                    // [S, D/2]
  auto emb = torch::cat({freqs, freqs}, -1);                   // [S, D]
  cos_cache_ = emb.cos().to(dtype);
  sin_cache_ = emb.sin().to(dtype);
  return {cos_cache_, sin_cache_};
}

// ---------------------------------------------------------------- attention

AttentionImpl::AttentionImpl(const ParamAllocator& alloc, const std::string& name, const Qwen2Config& cfg,
                             AttentionKernel kernel_)
    : n_heads(cfg.num_attention_heads), n_kv_heads(cfg.num_key_value_heads), head_dim(cfg.head_dim()),
      kernel(kernel_) {
  const int64_t h = cfg.hidden_size;
  q_proj = register_module("q_proj", Linear(alloc, name + ".q_proj", h, n_heads * head_dim, true));
  k_proj = register_module("k_proj", Linear(alloc, name + ".k_proj", h, n_kv_heads * head_dim, true));
  v_proj = register_module("v_proj", Linear(alloc, name + ".v_proj", h, n_kv_heads * head_dim, true));
  o_proj = register_module("o_proj", Linear(alloc, name + ".o_proj", n_heads * head_dim, h, false));
  if (kernel == AttentionKernel::kAuto) kernel = compat::kHasSdpa ? AttentionKernel::kSdpa : AttentionKernel::kMath;
  TORCH_CHECK(kernel != AttentionKernel::kSdpa || compat::kHasSdpa,
              "attention: scaled-dot-product attention is not available in this libtorch build");
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t B = x.size(0), S = x.size(1);
  auto q = q_proj(x).view({B, S, n_heads, head_dim}).transpose(1, 2);     // [B, Nq, S, D]
  auto k = k_proj(x).view({B, S, n_kv_heads, head_dim}).transpose(1, 2);  // [B, Nkv, S, D]
  auto v = v_proj(x).view({B, S, n_kv_heads, head_dim}).transpose(1, 2);  // [B, Nkv, S, D]
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  const int64_t groups = n_heads / n_kv_heads;
  if (groups > 1) {  // grouped-query attention: each kv head serves `groups` query heads
    k = k.repeat_interleave(groups, 1);  // [B, Nq, S, D]
    v = v.repeat_interleave(groups, 1);  // [B, Nq, S, D]
  }
  torch::Tensor out;  // [B, Nq, S, D]
  if (kernel == AttentionKernel::kSdpa) {
    out = compat::sdpa_causal(q, k, v);
  } else {
    // The plain path: scores in the input dtype, softmax in float32, as
    // Hugging Face's eager attention.
    auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim));  // [B, Nq, S, S]
    auto mask = torch::ones({S, S}, x.options().dtype(torch::kBool)).triu(1);                         // [S, S]
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());                    // [B, Nq, S, S]
    out = torch::matmul(probs, v);
  }
  out = out.transpose(1, 2).reshape({B, S, n_heads * head_dim});  // [B, S, H]
  return o_proj(out);                                             // [B, S, H]
}

// ---------------------------------------------------------------- MLP

MLPImpl::MLPImpl(const ParamAllocator& alloc, const std::string& name, const Qwen2Config& cfg) {
  const int64_t h = cfg.hidden_size, i = cfg.intermediate_size;
  gate_proj = register_module("gate_proj", Linear(alloc, name + ".gate_proj", h, i, false));
  up_proj = register_module("up_proj", Linear(alloc, name + ".up_proj", h, i, false));
  down_proj = register_module("down_proj", Linear(alloc, name + ".down_proj", i, h, false));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));  // [B, S, I] inside, [B, S, H] out
}

// ---------------------------------------------------------------- decoder layer

DecoderLayerImpl::DecoderLayerImpl(const ParamAllocator& alloc, const std::string& name, const Qwen2Config& cfg,
                                   AttentionKernel kernel) {
  const int64_t h = cfg.hidden_size;
  input_layernorm = register_module("input_layernorm", RMSNorm(alloc, name + ".input_layernorm", h, cfg.rms_norm_eps));
  self_attn = register_module("self_attn", Attention(alloc, name + ".self_attn", cfg, kernel));
  post_attention_layernorm = register_module(
      "post_attention_layernorm", RMSNorm(alloc, name + ".post_attention_layernorm", h, cfg.rms_norm_eps));
  mlp = register_module("mlp", MLP(alloc, name + ".mlp", cfg));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto h = x + self_attn(input_layernorm(x), cos, sin);  // [B, S, H]
  return h + mlp(post_attention_layernorm(h));          // [B, S, H]
}

namespace {

// Activation checkpointing for one decoder layer: forward without keeping
// activations, recompute them in backward. The layer's parameters are not
// inputs of the function; their gradients accumulate during the recompute's
// own backward, as PyTorch's reentrant checkpoint does.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor cos,
                               torch::Tensor sin, int64_t layer_ptr) {
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ctx->saved_data["layer"] = layer_ptr;
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(layer_ptr);
    return layer->forward(x, cos, sin);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto cos = ctx->saved_data["cos"].toTensor();
    auto sin = ctx->saved_data["sin"].toTensor();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      y = layer->forward(x, cos, sin);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

// ---------------------------------------------------------------- model

Qwen2BackboneImpl::Qwen2BackboneImpl(const ParamAllocator& alloc, const Qwen2Config& cfg, AttentionKernel kernel) {
  embed_tokens = register_module("embed_tokens", Embedding(alloc, "model.embed_tokens", cfg.vocab_size, cfg.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    layers->push_back(DecoderLayer(alloc, "model.layers." + std::to_string(i), cfg, kernel));
  }
  norm = register_module("norm", RMSNorm(alloc, "model.norm", cfg.hidden_size, cfg.rms_norm_eps));
}

Qwen2ForCausalLMImpl::Qwen2ForCausalLMImpl(const Qwen2Config& cfg, const ParamAllocator& alloc, AttentionKernel kernel)
    : config(cfg) {
  config.validate();
  model = register_module("model", Qwen2Backbone(alloc, cfg, kernel));
  if (!cfg.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(alloc, "lm_head", cfg.hidden_size, cfg.vocab_size, false));
  }
}

torch::Tensor Qwen2ForCausalLMImpl::lm_head_weight() const {
  return config.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
}

void Qwen2ForCausalLMImpl::set_checkpointed_layers(std::vector<bool> layers) {
  TORCH_CHECK(layers.empty() || static_cast<int64_t>(layers.size()) == config.num_hidden_layers,
              "set_checkpointed_layers: expected ", config.num_hidden_layers, " flags, got ", layers.size());
  checkpointed_ = std::move(layers);
}

torch::Tensor Qwen2ForCausalLMImpl::forward(const torch::Tensor& input_ids) {
  TORCH_CHECK(input_ids.dim() == 2, "forward: input_ids must be [batch, seq_len], got ", input_ids.sizes());
  const int64_t S = input_ids.size(1);
  auto x = model->embed_tokens(input_ids);                          // [B, S, H]
  auto [cos, sin] = rope(S, x.scalar_type(), x.device());           // [S, D] each
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto* layer = model->layers[i]->as<DecoderLayerImpl>();
    const bool ckpt = !checkpointed_.empty() && checkpointed_[i] && torch::GradMode::is_enabled();
    x = ckpt ? CheckpointedLayer::apply(x, cos, sin, reinterpret_cast<int64_t>(layer)) : layer->forward(x, cos, sin);
  }
  x = model->norm(x);                                               // [B, S, H]
  return torch::nn::functional::linear(x, lm_head_weight());        // [B, S, V]
}

// ---------------------------------------------------------------- loss

torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& input_ids) {
  const int64_t S = input_ids.size(1);
  auto shifted = logits.size(1) == S ? logits.narrow(1, 0, S - 1) : logits;  // [B, S-1, V]
  TORCH_CHECK(shifted.size(1) == S - 1, "causal_lm_loss: logits have ", logits.size(1), " positions for ", S, " ids");
  auto targets = input_ids.narrow(1, 1, S - 1).reshape({-1});                // [B*(S-1)]
  return torch::nn::functional::cross_entropy(shifted.reshape({-1, shifted.size(-1)}).to(torch::kFloat32), targets);
}

// ---------------------------------------------------------------- initialisation

void init_parameter(torch::Tensor& p, const std::string& name, size_t index, uint64_t seed, double initializer_range) {
  torch::NoGradGuard no_grad;
  const bool is_norm = name.find("norm.weight") != std::string::npos;
  const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  if (is_norm) {
    p.fill_(1.0);
  } else if (is_bias) {
    p.zero_();
  } else {
    // Draw in float32 and round once, so every dtype sees the same numbers.
    auto gen = compat::seeded_generator(p.device(), seed * 1000003ULL + index);
    p.copy_(at::normal(0.0, initializer_range, p.sizes(), gen, p.options().dtype(torch::kFloat32)));
  }
}

void init_weights(Qwen2ForCausalLM& model, uint64_t seed, double initializer_range) {
  size_t index = 0;
  for (auto& item : model->named_parameters()) init_parameter(item.value(), item.key(), index++, seed, initializer_range);
}

}  // namespace tournament
