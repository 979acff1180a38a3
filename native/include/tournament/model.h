// Qwen2 decoder-only language model on libtorch: the engine's model, the one
// every submission trains. Parameter names are Hugging Face's exactly
// ("model.layers.0.self_attn.q_proj.weight", ...), so checkpoints load by name.
//
// Shapes below: B batch, S sequence, H hidden, Nq query heads, Nkv key/value
// heads, D head dim (H / Nq), I intermediate, V vocab.
#pragma once

#include <tournament/libtorch.h>

#include <functional>
#include <string>
#include <vector>

namespace tournament {

struct Qwen2Config {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 1e6;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Throws c10::Error naming the first inconsistent field.
  void validate() const;
  // Number of parameters the model will have (embeddings and lm_head included).
  int64_t num_parameters() const;
};

// Every parameter of the model, Hugging Face name and shape, in the order the
// model registers them. Parameter memory layouts are computed from this.
struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t numel() const;
};
std::vector<ParamSpec> parameter_specs(const Qwen2Config& cfg);

// Where a parameter's storage comes from: given its full name and shape,
// return an (uninitialised) tensor. The default allocates on a device; the
// evaluation harness returns views into memory shared between processes.
using ParamAllocator = std::function<torch::Tensor(const std::string& name, at::IntArrayRef shape)>;
ParamAllocator device_allocator(torch::TensorOptions options);

// Which attention kernel the model uses. kAuto picks scaled-dot-product
// attention where the libtorch build has it (flash kernels on CUDA) and the
// plain math path elsewhere; the choice is made in one place (compat.h).
enum class AttentionKernel { kAuto, kSdpa, kMath };

// Causal self-attention as the model runs it: q [B, Nq, S, D], k/v [B, Nkv, S,
// D] (grouped-query: Nq a multiple of Nkv) -> [B, Nq, S, D]. kSdpa: flash
// attention through scaled_dot_product_attention (scores in float32); kMath:
// scores in the input dtype, softmax in float32, as Hugging Face's eager path.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               AttentionKernel kernel);

// y = x W^T + b, with W [out, in] and b [out] from the allocator.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(const ParamAllocator& alloc, const std::string& name, int64_t in, int64_t out, bool bias);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in] -> [..., out]
  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

// Token embedding: ids [B, S] -> [B, S, H], weight [V, H].
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(const ParamAllocator& alloc, const std::string& name, int64_t vocab, int64_t dim);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(const ParamAllocator& alloc, const std::string& name, int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // [..., H] -> [..., H]
  torch::Tensor weight;                           // [H]
  double eps;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ParamAllocator& alloc, const std::string& name, const Qwen2Config& cfg, AttentionKernel kernel);
  // x [B, S, H], cos/sin [S, D] -> [B, S, H]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_heads, n_kv_heads, head_dim;
  AttentionKernel kernel;
};
TORCH_MODULE(Attention);

class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(const ParamAllocator& alloc, const std::string& name, const Qwen2Config& cfg);
  torch::Tensor forward(const torch::Tensor& x);  // [B, S, H] -> [B, S, H]
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

// The SwiGLU MLP as MLPImpl computes it, down(silu(gate(x)) * up(x)), on any
// weights: [..., H] -> [..., H], every product linear_acc32's, with the
// backward autograd would run (keeping x, gate(x) and up(x) only).
torch::Tensor swiglu_mlp(const torch::Tensor& x, const torch::Tensor& w_gate, const torch::Tensor& w_up,
                         const torch::Tensor& w_down);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ParamAllocator& alloc, const std::string& name, const Qwen2Config& cfg,
                   AttentionKernel kernel);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  // forward(), handing the residual after the attention, the MLP's input
  // (its norm) and the MLP's output to `on_mlp` (where set), before the
  // residual add: the runner's record (train_api.h, version 6).
  using MlpObserver =
      std::function<void(const torch::Tensor& residual, const torch::Tensor& input, const torch::Tensor& output)>;
  torch::Tensor forward_observed(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                 const MlpObserver& on_mlp);
  RMSNorm input_layernorm{nullptr};
  Attention self_attn{nullptr};
  RMSNorm post_attention_layernorm{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

// The backbone, registered as "model" so names match Hugging Face's.
class Qwen2BackboneImpl : public torch::nn::Module {
 public:
  Qwen2BackboneImpl(const ParamAllocator& alloc, const Qwen2Config& cfg, AttentionKernel kernel);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Qwen2Backbone);

class Qwen2ForCausalLMImpl : public torch::nn::Module {
 public:
  // Parameters come from `alloc` uninitialised: call init_weights or load a
  // checkpoint before use.
  Qwen2ForCausalLMImpl(const Qwen2Config& cfg, const ParamAllocator& alloc,
                       AttentionKernel kernel = AttentionKernel::kAuto);

  // input_ids [B, S] int64 -> logits [B, S, V] in the parameters' dtype.
  torch::Tensor forward(const torch::Tensor& input_ids);

  // forward() without lm_head: the final hidden states [B, S, H], after the
  // last norm. With linear_cross_entropy this trains without materialising
  // the full logits.
  torch::Tensor hidden_states(const torch::Tensor& input_ids);

  // Recompute these decoder layers in backward instead of keeping their
  // activations (activation checkpointing). Empty: keep everything.
  void set_checkpointed_layers(std::vector<bool> layers);

  // Rotary tables for positions [0, S): cos, sin [S, D] in `dtype`, cached.
  std::pair<torch::Tensor, torch::Tensor> rope(int64_t seq_len, torch::Dtype dtype, torch::Device device);

  Qwen2Config config;
  Qwen2Backbone model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings
  torch::Tensor lm_head_weight() const;  // [V, H], tied or not

 private:
  std::vector<bool> checkpointed_;
  torch::Tensor cos_cache_, sin_cache_;
};
TORCH_MODULE(Qwen2ForCausalLM);

// Products of bf16 tensors accumulated in float32 and rounded once, as cuBLAS
// and oneDNN compute them: the engine's model computes every product so, and
// a submission that computes its own should too. libtorch 1.13 on a CPU
// without AVX-512 accumulates its bf16 products in bf16 itself, and there
// honest arithmetic that only splits a sum (gradient accumulation) lands far
// outside the verification's limits. Where libtorch's own products accumulate
// in float32 (CUDA; the CPU with AVX-512) these are exactly torch::matmul and
// F::linear (for 2-D x with a bias: addmm); elsewhere they compute in float32,
// autograd included.
torch::Tensor matmul_acc32(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor linear_acc32(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

// Causal language-model loss as Hugging Face computes it: logits[:, :-1]
// predict ids[:, 1:], cross entropy in float32, mean over all B*(S-1) targets.
// logits [B, S, V] or already shifted [B, S-1, V]; ids [B, S] -> scalar fp32.
torch::Tensor causal_lm_loss(const torch::Tensor& logits, const torch::Tensor& input_ids);

// causal_lm_loss(linear(hidden, weight), input_ids), the same arithmetic row
// by row, without the full logits: `chunk_rows` rows at a time, each chunk's
// logits in the weight's dtype, log-softmax in float32, and the gradients of
// hidden and weight computed right there (the loss is the last op of the
// graph, so backward only scales them). Memory: a few chunks of [chunk_rows, V]
// float32 instead of [B*S, V] float32 logits, their softmax and their gradient.
// When `logits_out` is defined ([B, S-1, V], the weight's dtype) the chunks'
// logits are written into it: the last step's logits a submission returns.
// hidden [B, S, H], weight [V, H], input_ids [B, S] -> scalar fp32.
torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& input_ids, torch::Tensor logits_out = {},
                                   int64_t chunk_rows = 2048);

// Memory planning for a training step.
// Bytes one decoder layer keeps for its backward at `tokens` = B * S tokens
// when it is not checkpointed (from the shapes: the layer input, both norms'
// inputs and outputs, q/k/v, the attention output, the MLP's gate and up).
int64_t layer_activation_bytes(const Qwen2Config& cfg, int64_t tokens, torch::Dtype dtype);
// Device memory a run can still take on `device`: the driver's free memory
// plus the caching allocator's unused cached blocks. -1 on the CPU.
int64_t available_device_memory(const torch::Device& device);

// Seeded random initialisation as Hugging Face's Qwen2 does it: normal(0,
// initializer_range) for linear and embedding weights (q_proj and k_proj
// scaled by final_norm_start), zero biases, ones for norms but the final one
// (final_norm_start). Each tensor draws from its own
// generator (seed, position), so any one can be regenerated alone:
// init_parameter(model's i-th parameter) gives the same values as
// init_weights gave it. Deterministic for a seed and device type.
void init_weights(Qwen2ForCausalLM& model, uint64_t seed, double initializer_range = 0.02);
// The final norm's start: sqrt(3584 / hidden_size), at least 1. A random
// start's logits spread as initializer_range * sqrt(hidden) * this: 1.2 on
// Qwen2.5-7B (hidden 3584, where this is 1), and so on a smaller model too.
// With ones, the tiny CPU model's logits would spread 0.23, where softmax is
// nearly linear and a first-order expansion of the loss head passes for
// training (the fourth attack pass did that, skipping a third of the work).
// The q and k projections start with their spread scaled by it too, so the
// tiny model's attention scores spread as the 7B's (about 1.4; 0.05 without:
// the ninth attack pass trained linear attention in place of softmax).
double final_norm_start(int64_t hidden_size);
void init_parameter(torch::Tensor& p, const std::string& name, size_t index, uint64_t seed,
                    double initializer_range = 0.02);

}  // namespace tournament
