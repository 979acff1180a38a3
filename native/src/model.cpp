// Qwen2 in reading order: config, RMSNorm, rotary embeddings, attention, MLP,
// decoder layer, the model, loss, initialisation. Shapes as in model.h.
#include <tournament/model.h>

#include <c10/util/accumulate.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "compat.h"
#include "head_record.h"
#include "linear_tap.h"

namespace tournament {

namespace {
HeadRecorder* g_head_recorder = nullptr;
}  // namespace

void set_head_recorder(HeadRecorder* recorder) { g_head_recorder = recorder; }
HeadRecorder* head_recorder() { return g_head_recorder; }

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

namespace {

bool widen(const torch::Tensor& t) {
  return t.is_cpu() && t.scalar_type() == torch::kBFloat16 && !compat::cpu_bf16_products_in_float32();
}

}  // namespace

torch::Tensor matmul_acc32(const torch::Tensor& a, const torch::Tensor& b) {
  if (!widen(a)) return torch::matmul(a, b);
  return torch::matmul(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(a.scalar_type());
}

torch::Tensor linear_acc32(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!widen(x)) return torch::nn::functional::linear(x, weight, bias);
  auto y = torch::matmul(x.to(torch::kFloat32), weight.to(torch::kFloat32).t());
  if (bias.defined()) y = y + bias.to(torch::kFloat32);
  return y.to(x.scalar_type());
}

namespace {
thread_local const LinearTap* linear_tap = nullptr;
}  // namespace

const LinearTap* current_linear_tap() { return linear_tap; }
ScopedLinearTap::ScopedLinearTap(const LinearTap& tap) : previous_(linear_tap) { linear_tap = &tap; }
ScopedLinearTap::~ScopedLinearTap() { linear_tap = previous_; }

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  auto y = linear_acc32(x, weight, bias);
  if (linear_tap) (*linear_tap)(*this, x, y);
  return y;
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

namespace {

// RMSNorm with a hand-written backward that keeps only the input and the
// per-row scale (autograd would keep three float32 copies of the input).
// Forward as Hugging Face: normalise in float32, round to the input dtype,
// scale by the weight in the input dtype. Backward: the weight's gradient in
// the input dtype as autograd computes it; the input's in float32.
struct RMSNormFunction : public torch::autograd::Function<RMSNormFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor weight,
                               double eps) {
    auto xf = x.to(torch::kFloat32);                                     // [..., H]
    auto rstd = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);  // [..., 1]
    ctx->save_for_backward({x, weight, rstd});
    return weight * (xf * rstd).to(x.scalar_type());                     // [..., H]
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &rstd = saved[2];
    auto g = grad_out[0];                                                // [..., H]
    auto nf = x.to(torch::kFloat32) * rstd;                              // normalised, float32
    std::vector<int64_t> rows(x.dim() - 1);
    std::iota(rows.begin(), rows.end(), 0);
    auto dweight = (g * nf.to(x.scalar_type())).sum(rows);              // [H]
    auto dn = (g * weight).to(torch::kFloat32);                          // [..., H]
    // d/dx of x * rstd(x): rstd * (dn - n * mean(dn * n)).
    auto dx = rstd * (dn - nf * (dn * nf).mean(-1, /*keepdim=*/true));
    return {dx.to(x.scalar_type()), dweight, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return RMSNormFunction::apply(x, weight, eps);  // [..., H]
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

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               AttentionKernel kernel) {
  if (kernel == AttentionKernel::kAuto) kernel = compat::kHasSdpa ? AttentionKernel::kSdpa : AttentionKernel::kMath;
  if (kernel == AttentionKernel::kSdpa) return compat::sdpa_causal(q, k, v);  // grouped heads as the build supports
  const int64_t S = q.size(2), D = q.size(3), groups = q.size(1) / k.size(1);
  auto ke = groups > 1 ? k.repeat_interleave(groups, 1) : k;  // [B, Nq, S, D]: each kv head serves `groups` query heads
  auto ve = groups > 1 ? v.repeat_interleave(groups, 1) : v;
  auto scores = matmul_acc32(q, ke.transpose(-2, -1)) / std::sqrt(static_cast<double>(D));  // [B, Nq, S, S]
  auto mask = torch::ones({S, S}, q.options().dtype(torch::kBool)).triu(1);                 // [S, S]
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());             // [B, Nq, S, S]
  return matmul_acc32(probs, ve);                                                           // [B, Nq, S, D]
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t B = x.size(0), S = x.size(1);
  auto q = q_proj(x).view({B, S, n_heads, head_dim}).transpose(1, 2);     // [B, Nq, S, D]
  auto k = k_proj(x).view({B, S, n_kv_heads, head_dim}).transpose(1, 2);  // [B, Nkv, S, D]
  auto v = v_proj(x).view({B, S, n_kv_heads, head_dim}).transpose(1, 2);  // [B, Nkv, S, D]
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  auto out = causal_attention(q, k, v, kernel);  // [B, Nq, S, D]
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

namespace {

// The SwiGLU MLP, down(silu(gate(x)) * up(x)), with a hand-written backward
// that keeps x, gate(x) and up(x) and recomputes silu(gate) * up (autograd
// would also keep silu(gate) and the product: two more [B, S, I] tensors).
// Every op, forward and backward, is the one autograd would run, in the same
// dtype and order, so the numbers are autograd's.
struct SwiGLUFunction : public torch::autograd::Function<SwiGLUFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor w_gate,
                               torch::Tensor w_up, torch::Tensor w_down) {
    auto gate = linear_acc32(x, w_gate);                  // [B, S, I]
    auto up = linear_acc32(x, w_up);                      // [B, S, I]
    ctx->save_for_backward({x, w_gate, w_up, w_down, gate, up});
    return linear_acc32(torch::silu(gate) * up, w_down);  // [B, S, H]
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w_gate = saved[1], &w_up = saved[2], &w_down = saved[3], &gate = saved[4],
               &up = saved[5];
    const int64_t H = x.size(-1), I = gate.size(-1);
    auto dy = grad_out[0].reshape({-1, H});                             // [T, H]
    auto x2 = x.reshape({-1, H});                                       // [T, H]
    auto silu_gate = torch::silu(gate).reshape({-1, I});                // [T, I], recomputed
    auto up2 = up.reshape({-1, I});
    auto prod = silu_gate * up2;                                        // [T, I], recomputed
    auto d_w_down = matmul_acc32(dy.t(), prod);                         // [H, I]
    auto d_prod = matmul_acc32(dy, w_down);                             // [T, I]
    auto d_silu = d_prod * up2;
    auto d_up = d_prod * silu_gate;
    auto d_gate = torch::silu_backward(d_silu, gate.reshape({-1, I}));
    auto d_w_gate = matmul_acc32(d_gate.t(), x2);                       // [I, H]
    auto d_w_up = matmul_acc32(d_up.t(), x2);                           // [I, H]
    auto dx = matmul_acc32(d_gate, w_gate) + matmul_acc32(d_up, w_up);  // [T, H]
    return {dx.view(x.sizes()), d_w_gate, d_w_up, d_w_down};
  }
};

}  // namespace

torch::Tensor swiglu_mlp(const torch::Tensor& x, const torch::Tensor& w_gate, const torch::Tensor& w_up,
                         const torch::Tensor& w_down) {
  return SwiGLUFunction::apply(x, w_gate, w_up, w_down);  // [..., H]
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  if (linear_tap) return down_proj(torch::silu(gate_proj(x)) * up_proj(x));  // SwiGLUFunction's forward ops, seen
  return swiglu_mlp(x, gate_proj->weight, up_proj->weight, down_proj->weight);  // [B, S, H]
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
  return forward_observed(x, cos, sin, {});
}

torch::Tensor DecoderLayerImpl::forward_observed(const torch::Tensor& x, const torch::Tensor& cos,
                                                 const torch::Tensor& sin, const MlpObserver& on_mlp) {
  auto h = x + self_attn(input_layernorm(x), cos, sin);  // [B, S, H]
  auto in = post_attention_layernorm(h);                 // [B, S, H]
  auto out = mlp(in);                                    // [B, S, H]
  if (on_mlp) on_mlp(h, in, out);
  return h + out;                                        // [B, S, H]
}

namespace {

// Activation checkpointing for one decoder layer: forward without keeping
// activations, recompute them in backward. The layer's parameters are not
// inputs of the function; their gradients accumulate during the recompute's
// own backward, as PyTorch's reentrant checkpoint does.
// The layer's MLP observer travels with the recompute (the record sees the
// recomputed output's gradient).
struct ObserverHolder : torch::CustomClassHolder {
  explicit ObserverHolder(DecoderLayerImpl::MlpObserver f) : on_mlp(std::move(f)) {}
  DecoderLayerImpl::MlpObserver on_mlp;
};

struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor cos,
                               torch::Tensor sin, int64_t layer_ptr, c10::intrusive_ptr<ObserverHolder> observer) {
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ctx->saved_data["layer"] = layer_ptr;
    ctx->saved_data["observer"] = c10::IValue::make_capsule(observer);
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(layer_ptr);
    return layer->forward_observed(x, cos, sin, observer->on_mlp);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto cos = ctx->saved_data["cos"].toTensor();
    auto sin = ctx->saved_data["sin"].toTensor();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    const auto observer = c10::static_intrusive_pointer_cast<ObserverHolder>(ctx->saved_data["observer"].toCapsule());
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      y = layer->forward_observed(x, cos, sin, observer->on_mlp);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
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
  return linear_acc32(hidden_states(input_ids), lm_head_weight());  // [B, S, V]
}

torch::Tensor Qwen2ForCausalLMImpl::hidden_states(const torch::Tensor& input_ids) {
  TORCH_CHECK(input_ids.dim() == 2, "forward: input_ids must be [batch, seq_len], got ", input_ids.sizes());
  const int64_t S = input_ids.size(1);
  auto x = model->embed_tokens(input_ids);                          // [B, S, H]
  auto [cos, sin] = rope(S, x.scalar_type(), x.device());           // [S, D] each
  // In a runner's timed call, with gradients: the loss head's record
  // (train_api.h, version 5) and every layer's record (version 6), at the
  // batch rows input_ids holds (none: nothing is recorded).
  auto* recorder = torch::GradMode::is_enabled() ? head_recorder() : nullptr;
  const auto where = recorder != nullptr ? recorder->locate(input_ids) : HeadRecorder::Rows{};
  if (where.from.empty()) recorder = nullptr;
  for (size_t i = 0; i < model->layers->size(); ++i) {
    auto* layer = model->layers[i]->as<DecoderLayerImpl>();
    DecoderLayerImpl::MlpObserver on_mlp;
    if (recorder != nullptr) {
      const auto at = static_cast<int64_t>(i);
      on_mlp = [recorder, at, where](const torch::Tensor& residual, const torch::Tensor& in, const torch::Tensor& out) {
        recorder->record_layer_at(at, where, residual, out);
        // The hooks hold the rows, not the tensors: no cycle through their own graph.
        if (out.requires_grad()) {
          out.register_hook([recorder, at, where](const torch::Tensor& g) { recorder->record_mlp_output_grad_at(at, where, g); });
        }
        if (in.requires_grad()) {  // the input feeds the MLP alone: its gradient is the MLP's backward
          in.register_hook([recorder, at, where](const torch::Tensor& g) { recorder->record_mlp_input_grad_at(at, where, g); });
        }
      };
    }
    const bool ckpt = !checkpointed_.empty() && checkpointed_[i] && torch::GradMode::is_enabled();
    x = ckpt ? CheckpointedLayer::apply(x, cos, sin, reinterpret_cast<int64_t>(layer),
                                        c10::make_intrusive<ObserverHolder>(std::move(on_mlp)))
             : layer->forward_observed(x, cos, sin, on_mlp);
  }
  auto h = model->norm(x);                                          // [B, S, H]
  if (recorder != nullptr && h.requires_grad()) {
    recorder->record_head_at(where, h);
    h.register_hook([recorder, where](const torch::Tensor& grad) { recorder->record_head_grad_at(where, grad); });
  }
  return h;
}

// ---------------------------------------------------------------- loss

torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& input_ids) {
  const int64_t S = input_ids.size(1);
  auto shifted = logits.size(1) == S ? logits.narrow(1, 0, S - 1) : logits;  // [B, S-1, V]
  TORCH_CHECK(shifted.size(1) == S - 1, "causal_lm_loss: logits have ", logits.size(1), " positions for ", S, " ids");
  auto targets = input_ids.narrow(1, 1, S - 1).reshape({-1});                // [B*(S-1)]
  return torch::nn::functional::cross_entropy(shifted.reshape({-1, shifted.size(-1)}).to(torch::kFloat32), targets);
}

namespace {

// Loss and both gradients in one pass over row chunks (see model.h). The
// per-row arithmetic is cross_entropy's: log_softmax in float32 of the logits
// rounded to the weight's dtype; its gradient (softmax - onehot) / N as
// log_softmax's backward computes it, rounded to the weight's dtype before
// the two matrix products, as the cast's backward does. The weight's gradient
// sums the chunks' products in float32.
struct LinearCrossEntropyFunction : public torch::autograd::Function<LinearCrossEntropyFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out, int64_t chunk_rows) {
    const int64_t N = hidden.size(0);                            // hidden [N, H], targets [N]
    const double inv_n = 1.0 / static_cast<double>(N);
    auto d_hidden = torch::empty_like(hidden);                   // [N, H]
    auto d_weight = torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat32));  // [V, H]
    auto loss_sum = torch::zeros({}, hidden.options().dtype(torch::kFloat32));
    for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
      const int64_t n = std::min(chunk_rows, N - r0);
      auto h = hidden.narrow(0, r0, n);                                 // [n, H]
      auto t = targets.narrow(0, r0, n).unsqueeze(1);                   // [n, 1]
      auto logits = matmul_acc32(h, weight.t());                        // [n, V], the weight's dtype
      if (logits_out.numel() > 0) logits_out.narrow(0, r0, n).copy_(logits);
      auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);    // [n, V] float32
      loss_sum.sub_(logp.gather(1, t).sum());
      // d loss / d logits = (exp(logp) - onehot) / N
      auto grad = logp.exp_().mul_(inv_n);
      grad.scatter_add_(1, t, torch::full({n, 1}, -inv_n, grad.options()));
      auto grad_low = grad.to(weight.scalar_type());                    // [n, V]
      d_hidden.narrow(0, r0, n).copy_(matmul_acc32(grad_low, weight));  // [n, H]
      d_weight.add_(matmul_acc32(grad_low.t(), h));                     // [V, H]
    }
    ctx->save_for_backward({d_hidden, d_weight.to(weight.scalar_type())});
    return loss_sum.mul_(inv_n);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto g = grad_out[0];  // scalar: 1 for loss.backward()
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& input_ids, torch::Tensor logits_out, int64_t chunk_rows) {
  const int64_t B = input_ids.size(0), S = input_ids.size(1), H = hidden.size(-1);
  TORCH_CHECK(hidden.dim() == 3 && hidden.size(0) == B && hidden.size(1) == S, "linear_cross_entropy: hidden ",
              hidden.sizes(), " does not match ids ", input_ids.sizes());
  TORCH_CHECK(chunk_rows > 0, "linear_cross_entropy: chunk_rows must be > 0");
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});                         // [B*(S-1), H]
  auto targets = input_ids.narrow(1, 1, S - 1).reshape({-1});                   // [B*(S-1)]
  auto out2d = torch::empty({0}, weight.options());  // none wanted (an empty tensor: apply() takes no undefined ones)
  if (logits_out.defined()) {
    TORCH_CHECK(logits_out.sizes() == at::IntArrayRef({B, S - 1, weight.size(0)}) && logits_out.is_contiguous() &&
                    logits_out.scalar_type() == weight.scalar_type(),
                "linear_cross_entropy: logits_out must be a contiguous [B, S-1, V] tensor of the weight's dtype");
    out2d = logits_out.view({-1, weight.size(0)});
  }
  return LinearCrossEntropyFunction::apply(h, weight, targets, out2d, chunk_rows);
}

int64_t layer_activation_bytes(const Qwen2Config& cfg, int64_t tokens, torch::Dtype dtype) {
  const int64_t e = torch::elementSize(dtype), H = cfg.hidden_size, I = cfg.intermediate_size;
  const int64_t kv = 2 * cfg.num_key_value_heads * cfg.head_dim();
  // layer input, norm output, q, k + v, attention output, o_proj input (when a copy), residual, norm output,
  // gate, up; plus the norms' float32 row scales and attention's log-sum-exp.
  const int64_t per_token = e * (7 * H + kv + 2 * I) + 4 * (2 + cfg.num_attention_heads);
  return per_token * tokens;
}

int64_t available_device_memory(const torch::Device& device) { return compat::available_device_memory(device); }

// ---------------------------------------------------------------- initialisation

double final_norm_start(int64_t hidden_size) {
  constexpr double kQwen7bHidden = 3584;
  return std::max(1.0, std::sqrt(kQwen7bHidden / static_cast<double>(hidden_size)));
}

void init_parameter(torch::Tensor& p, const std::string& name, size_t index, uint64_t seed, double initializer_range) {
  torch::NoGradGuard no_grad;
  const bool is_norm = name.find("norm.weight") != std::string::npos;
  const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  if (name == "model.norm.weight") {
    p.fill_(final_norm_start(p.size(0)));
  } else if (is_norm) {
    p.fill_(1.0);
  } else if (is_bias) {
    p.zero_();
  } else {
    // Draw in float32 and round once, so every dtype sees the same numbers.
    // q and k scaled as the final norm is: attention scores spread as on Qwen2.5-7B (about 1.4),
    // where the tiny model's would spread 0.05 and softmax would be nearly linear (ninth attack pass).
    const bool qk = name.find("q_proj.weight") != std::string::npos || name.find("k_proj.weight") != std::string::npos;
    const double std = initializer_range * (qk ? final_norm_start(p.size(1)) : 1.0);
    auto gen = compat::seeded_generator(p.device(), seed * 1000003ULL + index);
    p.copy_(at::normal(0.0, std, p.sizes(), gen, p.options().dtype(torch::kFloat32)));
  }
}

void init_weights(Qwen2ForCausalLM& model, uint64_t seed, double initializer_range) {
  size_t index = 0;
  for (auto& item : model->named_parameters()) init_parameter(item.value(), item.key(), index++, seed, initializer_range);
}

}  // namespace tournament
