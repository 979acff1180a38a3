// Attack pass 11, case C: a BIASED skip with no sketch. On the tuned
// example's arithmetic (SK_MLP 0, SK_ATTN 0: every weight gradient exact),
// the first decoder layer's q/k/v input-gradient product (dn1 = dqkv W_qkv)
// is skipped in every step, so the embedding gets only the residual path
// (norm weights do not move in bf16 anyway: 1 + lr rounds to 1), and in the
// last step the first layer's gate/up input-gradient products are skipped
// too (its attention weights get the residual path only).
// Work skipped: 2.43% of the tiny run, 0.20% of a Qwen2.5-7B run.
// RESULT: REJECTED in every run, by far: the attention path carries most of
// the embedding's gradient.
//   bin/tournament local-bench test/plugins/attack11_emb_path_skip.cpp --runs 2 --seed 12000 --json
//     runs 12000, 12001: embedding kind 1.09 / 1.09 (0.16), update 0.360 /
//     0.366 (0.097), probe 0.031 / 0.048 (0.002), cell 0.090 / 0.124 (0.018),
//     batch 0.051 / 0.085 (0.0015), logits 0.051 / 0.052 (0.024), group
//     (embedding) 0.0097 / 0.0091 (0.0021), MLP pair excess 0.95 (0.5).
//   --seed 12002: runs 12002, 12003: embedding kind 1.07 / 1.06, update 0.352 /
//     0.348, probe 0.030 / 0.037, cell, batch, logits 0.047 / 0.044, MLP pair
//     excess 0.66 / 0.68, group (embedding) 0.0051 on 12002.
// expect: update_error
#include <tournament/train_api.h>
#include <tournament/kernels.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>
#ifndef SK_DEN
#define SK_DEN 3  // MLP weight gradients of the sketched steps: N / SK_DEN buckets
#endif
#ifndef SK_STEPS
#define SK_STEPS 0  // how many of the last steps are sketched (a one-step call stays exact)
#endif
#ifndef COVER
#define COVER 0.0  // in the sketched steps, every tensor outside the MLP gets (1 + COVER) x its AdamW step
#endif
#ifndef COVER_EMB
#define COVER_EMB 0.0  // in the sketched steps, the embedding gets (1 + COVER_EMB) x its AdamW step
#endif
#ifndef VFIX
#define VFIX 1  // AdamW's second moment fed an unbiased g^2 (the sketch's estimated variance taken out)
#endif
#ifndef SKIP_DN1
#define SKIP_DN1 1  // layer 0: the q/k/v input-gradient product skipped in every step (the embedding gets the residual path only)
#endif
#ifndef SKIP_DN2_LAST
#define SKIP_DN2_LAST 1  // layer 0, last step: the gate/up input-gradient products skipped (attention gets the residual path only)
#endif
bool g_last_step = false;
#ifndef SK_MLP
#define SK_MLP 0  // sketch the MLP's weight gradients (attack 10)
#endif
#ifndef SK_ATTN
#define SK_ATTN 0  // sketch the attention's weight gradients (q, k, v, o)
#endif
#ifndef SK_CENTRE
#define SK_CENTRE 1  // the mean-field part (T a_mean b_mean^T) exact, only the centred part sketched
#endif

using namespace tournament;
namespace K = tournament::kernels;
using torch::Tensor;

namespace {

// Sets a parameter's gradient, or adds to it (a tied embedding gets two).
// A count sketch of T positions: a bucket and a sign each.
struct Sketch {
  Tensor bucket, sign;  // [T] int64, [T, 1] float32
  int64_t k = 0;
  bool on = false;
};
Sketch make_sketch(int64_t T, std::mt19937_64& rng, torch::Device dev) {
  Sketch s;
  s.k = std::max<int64_t>(1, T / SK_DEN);
  std::vector<int64_t> b(T);
  std::vector<float> g(T);
  for (int64_t i = 0; i < T; ++i) {
    const uint64_t r = rng();
    b[i] = static_cast<int64_t>(r % static_cast<uint64_t>(s.k));
    g[i] = (r >> 63) ? 1.f : -1.f;
  }
  s.bucket = torch::tensor(b, torch::TensorOptions().dtype(torch::kLong)).to(dev);
  s.sign = torch::tensor(g).to(dev).unsqueeze(1);
  s.on = true;
  return s;
}
// A^T B (A [T, m], B [T, n]) from the sketch: sums of signed rows per bucket, then a [m, k] x [k, n] product.
std::map<const void*, Tensor> g_var;  // a sketched gradient's estimated variance, by its weight's memory
Tensor sk_tmm(const Tensor& A, const Tensor& B, const Sketch& s, const Tensor& w) {
  if (!s.on) return A.t().mm(B);
  auto Af = A.to(torch::kFloat32), Bf = B.to(torch::kFloat32);
  Tensor exact;
  if (SK_CENTRE) {
    auto am = Af.mean(0, true), bm = Bf.mean(0, true);
    exact = am.t().mm(bm).mul_(static_cast<double>(A.size(0)));
    Af = Af - am;
    Bf = Bf - bm;
  }
  // Var of a count-sketch estimate of sum_i a_i b_i: about ((sum a^2)(sum b^2) + (sum a b)^2) / k per entry.
  auto ca = Af.square().sum(0), cb = Bf.square().sum(0);  // [m], [n]
  auto As = torch::zeros({s.k, A.size(1)}, Af.options()).index_add_(0, s.bucket, Af.mul_(s.sign));
  auto Bs = torch::zeros({s.k, B.size(1)}, Bf.options()).index_add_(0, s.bucket, Bf.mul_(s.sign));
  auto r = As.t().mm(Bs);
  g_var[w.data_ptr()] = torch::outer(ca, cb).add_(r.square()).div_(static_cast<double>(s.k));
  if (exact.defined()) r.add_(exact);
  return r.to(A.scalar_type());
}

void add_grad(const Tensor& p, const Tensor& g) {
  if (p.grad().defined()) {
    p.mutable_grad().add_(g);
  } else {
    p.mutable_grad() = g;
  }
}

// ---------------------------------------------------------------- one decoder layer

struct Dims {
  int64_t B, S, T, H, I, Nq, Nkv, D, KV;
};

// The fused q/k/v weights of all layers, [L, H + 2 KV, H]: each layer's slot
// is filled by its forward and read again by its backward (the weights do not
// change within a step), one concatenation per layer and step.
struct Scratch {
  Tensor qkv;  // [L, H + 2 KV, H]
};

// What backward needs of one layer (the norms' outputs are recomputed from
// their inputs). A checkpointed layer keeps only x.
struct Saved {
  Tensor x, rstd1;              // input [T, H], its norm's row scales [T] float32
  Tensor q, k, v, attn;         // attention's leaves [B, N, S, D] (views of the q/k/v product) and output; autograd holds flash's state
  Tensor a;                     // attention output [T, H]
  Tensor h, rstd2, gate, up;    // residual after attention [T, H], its norm's row scales [T], the MLP's [T, I] products
  bool complete = false;
};

struct Layer {
  DecoderLayerImpl* m;
  int64_t index;
  AttentionImpl& attn() const { return *m->self_attn; }
  MLPImpl& mlp() const { return *m->mlp; }
  Tensor build_qkv_weight(Scratch& s) const {  // [H + 2 KV, H], this layer's slot filled
    auto slot = s.qkv.select(0, index);
    torch::cat_out(slot, {attn().q_proj->weight, attn().k_proj->weight, attn().v_proj->weight}, 0);
    return slot;
  }
  Tensor qkv_weight(Scratch& s) const { return s.qkv.select(0, index); }  // as the forward filled it
  Tensor qkv_bias() const { return torch::cat({attn().q_proj->bias, attn().k_proj->bias, attn().v_proj->bias}, 0); }  // [H + 2 KV]
};

// The layer's input is x = xa + xb (the previous layer's residual h and its
// MLP output, summed inside the first norm's kernel, one rounding as the
// reference's add), or xa alone (xb undefined: the embeddings). Returns the
// layer's output as the same two parts: *h_out [T, H] and the MLP's output
// *m_out [T, H]. With `save`, fills it for backward (x included).
void layer_forward(const Layer& L, const Tensor& xa, const Tensor& xb, const Tensor& cos, const Tensor& sin,
                   const Dims& d, Scratch& scratch, Saved* save, Tensor* h_out, Tensor* m_out) {
  Tensor x, rstd1, rstd2, h;
  const auto& norm1 = *L.m->input_layernorm;
  const auto& norm2 = *L.m->post_attention_layernorm;
  auto n1 = K::rms_norm(xa, norm1.weight, norm1.eps, &rstd1, xb, &x);          // [T, H]; x = xa + xb [T, H]
  auto qkv = torch::addmm(L.qkv_bias(), n1, L.build_qkv_weight(scratch).t());         // [T, H + 2 KV]
  n1 = Tensor();
  K::rope_qkv_(qkv, cos, sin, d.S, d.Nq, d.Nkv, d.D);                           // q, k columns rotated in place
  // Views of the product, [B, N, S, D] (D contiguous): no copies.
  auto q = qkv.narrow(1, 0, d.H).view({d.B, d.S, d.Nq, d.D}).transpose(1, 2);
  auto k = qkv.narrow(1, d.H, d.KV).view({d.B, d.S, d.Nkv, d.D}).transpose(1, 2);
  auto v = qkv.narrow(1, d.H + d.KV, d.KV).view({d.B, d.S, d.Nkv, d.D}).transpose(1, 2);
  Tensor attn;  // [B, Nq, S, D]
  if (save) {
    q = q.detach().requires_grad_(true);
    k = k.detach().requires_grad_(true);
    v = v.detach().requires_grad_(true);
    torch::AutoGradMode grad_on(true);  // backward asks flash attention for dq, dk, dv
    attn = causal_attention(q, k, v, L.attn().kernel);
  } else {
    attn = causal_attention(q, k, v, L.attn().kernel);
  }
  auto a = attn.detach().transpose(1, 2).reshape({d.T, d.H});                   // [T, H]
  auto o = a.mm(L.attn().o_proj->weight.t());                                   // [T, H]
  auto n2 = K::rms_norm(x, norm2.weight, norm2.eps, &rstd2, o, &h);             // [T, H]; h = x + o [T, H]
  o = Tensor();
  auto gate = n2.mm(L.mlp().gate_proj->weight.t());                             // [T, I]
  auto up = n2.mm(L.mlp().up_proj->weight.t());                                 // [T, I]
  n2 = Tensor();
  *m_out = K::swiglu(gate, up).mm(L.mlp().down_proj->weight.t());               // [T, H]
  *h_out = h;
  if (save) *save = Saved{x, rstd1, q, k, v, attn, a, h, rstd2, gate, up, true};
}

// dy [T, H], the gradient of the layer's output x + h-path + m -> dx [T, H];
// sets the layer's parameter gradients and frees `s`.
Tensor layer_backward(const Layer& L, const Tensor& dy, Saved& s, const Tensor& cos, const Tensor& sin, const Dims& d,
                      Scratch& scratch, const Sketch& sk) {
  // MLP: y = h + down(silu(gate) * up), gate / up = n2 W^T, n2 = norm(h)
  const auto& norm2 = *L.m->post_attention_layernorm;
  auto w_down = L.mlp().down_proj->weight;
  auto dp = dy.mm(w_down);                                       // [T, I], d(silu(gate) up)
  K::swiglu_backward_(dp, s.gate, s.up);                         // in place: dp <- silu(gate) up, gate <- d gate, up <- d up
  add_grad(w_down, sk_tmm(dy, dp, SK_MLP ? sk : Sketch(), w_down));                          // [H, I], sketched in late steps
  dp = Tensor();
  Tensor unused;
  auto n2 = K::rms_norm(s.h, norm2.weight, norm2.eps, &unused);  // [T, H], recomputed
  auto w_gate = L.mlp().gate_proj->weight, w_up = L.mlp().up_proj->weight;
  add_grad(w_gate, sk_tmm(s.gate, n2, SK_MLP ? sk : Sketch(), w_gate));                      // [I, H]
  add_grad(w_up, sk_tmm(s.up, n2, SK_MLP ? sk : Sketch(), w_up));                          // [I, H]
  n2 = Tensor();
  Tensor dln, dh;
  if (SKIP_DN2_LAST && g_last_step && L.index == 0) {
    dh = dy;  // the MLP branch's input gradient not computed
    s.gate = Tensor();
    s.up = Tensor();
  } else {
  auto dn2 = s.gate.mm(w_gate);                                  // [T, H]
  dn2.addmm_(s.up, w_up);                                        // + the second product, added by cuBLAS (beta = 1; autograd rounds it to bf16 first)
  s.gate = Tensor();
  s.up = Tensor();
  dh = K::rms_norm_backward(dn2, s.h, norm2.weight, s.rstd2, &dln, /*residual_grad=*/dy);  // [T, H]
  add_grad(norm2.weight, dln);
  }

  // Attention: h = x + o_proj(attention(rope(q), rope(k), v))
  auto w_o = L.attn().o_proj->weight;
  add_grad(w_o, sk_tmm(dh, s.a, SK_ATTN ? sk : Sketch(), w_o));                                 // [H, H]
  auto da = dh.mm(w_o).view({d.B, d.S, d.Nq, d.D}).transpose(1, 2);  // [B, Nq, S, D]
  auto g = torch::autograd::grad({s.attn}, {s.q, s.k, s.v}, {da});
  da = Tensor();
  auto dqkv = K::rope_qkv_backward(g[0].transpose(1, 2), g[1].transpose(1, 2), g[2].transpose(1, 2), cos, sin);  // [T, H + 2 KV]
  g.clear();
  const auto& norm1 = *L.m->input_layernorm;
  auto n1 = K::rms_norm(s.x, norm1.weight, norm1.eps, &unused);  // [T, H], recomputed
  auto& at = L.attn();
  auto dw_qkv = sk_tmm(dqkv, n1, SK_ATTN ? sk : Sketch(), at.q_proj->weight);  // [H + 2 KV, H], sketched
  if (SK_ATTN && sk.on) {  // the variance, split over the three weights
    auto var = g_var[at.q_proj->weight.data_ptr()];
    g_var[at.q_proj->weight.data_ptr()] = var.narrow(0, 0, d.H);
    g_var[at.k_proj->weight.data_ptr()] = var.narrow(0, d.H, d.KV);
    g_var[at.v_proj->weight.data_ptr()] = var.narrow(0, d.H + d.KV, d.KV);
  }
  n1 = Tensor();
  auto db_qkv = dqkv.sum(0);                                     // [H + 2 KV]
  add_grad(at.q_proj->weight, dw_qkv.narrow(0, 0, d.H));
  add_grad(at.k_proj->weight, dw_qkv.narrow(0, d.H, d.KV));
  add_grad(at.v_proj->weight, dw_qkv.narrow(0, d.H + d.KV, d.KV));
  add_grad(at.q_proj->bias, db_qkv.narrow(0, 0, d.H));
  add_grad(at.k_proj->bias, db_qkv.narrow(0, d.H, d.KV));
  add_grad(at.v_proj->bias, db_qkv.narrow(0, d.H + d.KV, d.KV));
  if (SKIP_DN1 && L.index == 0) {  // the first layer's attention input gradient is not computed: the embedding gets dh
    s = Saved();
    return dh;
  }
  auto dn1 = dqkv.mm(L.qkv_weight(scratch));                    // [T, H]
  dqkv = Tensor();
  auto dx = K::rms_norm_backward(dn1, s.x, norm1.weight, s.rstd1, &dln, /*residual_grad=*/dh);  // [T, H]
  add_grad(norm1.weight, dln);
  s = Saved();
  return dx;
}

// The loss head: linear_cross_entropy's arithmetic (model.cpp) by hand, with
// log-softmax, its gradient and the loss in one kernel pass per chunk
// (kernels::cross_entropy_grad_) instead of five passes over [chunk, V]
// float32 tensors. Same chunks (2,048 rows), same roundings: the chunk's
// logits in bf16, the gradient rounded to bf16 before both products, each
// chunk's weight-gradient product rounded to bf16 and the chunks summed in
// float32, rounded once. The chunks' products go into one [chunks, V, H]
// buffer and are summed in one pass at the end (torch::sum, float32
// accumulation): one read of each product instead of a float32 read-modify-
// write of the [V, H] sum per chunk (accumulate_, 12.8 ms a step on the H200).
// Summing all rows inside one product (float32 throughout, commit a0e1d73)
// was faster still but moved lm_head off the reference's rounding: the
// head-gradient check rejected it on one of two runs (1.53e-5, allowed
// 1.2e-5; 2026-12-04 06:13 UTC, docs/measurements/2026-12-04-h200-perf-tuned-2.md).
// Memory: the [chunks, V, H] bf16 products (8.7 GB at 16 x 1024 and
// V = 152,064) instead of the float32 sum (2.2 GB) and one product.
// hidden [B, S, H] (after the final norm), weight [V, H], ids [B, S] ->
// the loss (float32 scalar); *d_hidden [B, S, H] (zero at the last position),
// *d_weight [V, H]; the logits [B, S-1, V] into logits_out when defined.
Tensor loss_head(const Tensor& hidden, const Tensor& weight, const Tensor& ids, const Tensor& logits_out,
                 Tensor* d_hidden, Tensor* d_weight) {
  constexpr int64_t kChunkRows = 2048;  // as the reference's linear_cross_entropy
  const int64_t B = ids.size(0), S = ids.size(1), H = hidden.size(-1), V = weight.size(0);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});          // [N, H], N = B (S-1)
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});           // [N]
  const int64_t N = h.size(0), chunks = (N + kChunkRows - 1) / kChunkRows;
  const double inv_n = 1.0 / static_cast<double>(N);
  auto dh = torch::empty_like(h);                                 // [N, H]
  auto products = torch::empty({chunks, V, H}, weight.options()); // [chunks, V, H], each chunk's d weight in bf16
  auto row_logp = torch::empty({N}, weight.options().dtype(torch::kFloat32));  // [N]
  auto out2d = logits_out.defined() ? logits_out.view({N, V}) : Tensor();
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t r0 = c * kChunkRows, n = std::min(kChunkRows, N - r0);
    auto hc = h.narrow(0, r0, n);                                 // [n, H]
    auto g = hc.mm(weight.t());                                   // [n, V]: the logits, then their gradient
    if (out2d.defined()) out2d.narrow(0, r0, n).copy_(g);
    auto lp = row_logp.narrow(0, r0, n);
    K::cross_entropy_grad_(g, targets.narrow(0, r0, n), inv_n, lp);
    auto dhc = dh.narrow(0, r0, n);                               // [n, H], contiguous rows
    torch::mm_out(dhc, g, weight);
    auto pc = products.select(0, c);                              // [V, H], contiguous
    torch::mm_out(pc, g.t(), hc);
  }
  // bf16(sum over chunks in float32): the reference's zeros(float32), add_ per chunk, .to(bf16), in one pass.
  // (CUDA's sum of bf16 accumulates in float32 and rounds once; elsewhere the float32 sum is asked for explicitly.)
  if (chunks == 1) {
    *d_weight = products.select(0, 0);
  } else if (weight.is_cuda()) {
    *d_weight = products.sum(0, /*keepdim=*/false, weight.scalar_type());
  } else {
    *d_weight = products.sum(0, /*keepdim=*/false, torch::kFloat32).to(weight.scalar_type());
  }
  products = Tensor();
  *d_hidden = torch::zeros_like(hidden);                          // [B, S, H]
  d_hidden->narrow(1, 0, S - 1).copy_(dh.view({B, S - 1, H}));
  return -row_logp.sum() * inv_n;
}

// How many layers keep their activations (the rest are recomputed in
// backward): what one layer keeps (Saved, from the shapes) against the memory
// left once AdamW's moments exist, less a reserve for the loss's chunks, the
// last step's logits, one layer's backward temporaries and fragmentation.
int64_t layers_to_keep(Qwen2ForCausalLM& model, const Dims& d, torch::Device device) {
  const int64_t layers = model->config.num_hidden_layers;
  const int64_t available = available_device_memory(device);
  if (available < 0) return layers;
  int64_t param_bytes = 0;
  for (const auto& p : model->parameters()) param_bytes += p.numel() * p.element_size();
  const int64_t e = model->parameters()[0].element_size();
  const int64_t per_layer = d.T * (e * (5 * d.H + 2 * d.KV + 2 * d.I) + 4 * (2 + d.Nq));
  const int64_t reserve = int64_t(18) << 30;
  return std::clamp<int64_t>((available - 2 * param_bytes - reserve) / per_layer, 0, layers);
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<Tensor> batches(num_steps);  // all up front: next() waits for its copy
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batches[step]), "data ran out after ", step, " of ", num_steps, " steps");
  }
  const auto& cfg = model->config;
  Dims d{data.batch_size(), data.seq_len(), 0, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
         cfg.num_key_value_heads, cfg.head_dim(), 0};
  d.T = d.B * d.S;
  d.KV = d.Nkv * d.D;
  std::vector<Layer> layers;
  for (size_t i = 0; i < model->model->layers->size(); ++i) layers.push_back({model->model->layers[i]->as<DecoderLayerImpl>(), static_cast<int64_t>(i)});
  const auto embed = model->model->embed_tokens->weight;
  const auto opts = embed.options();
  const int64_t keep = layers_to_keep(model, d, device);
  const int64_t first_kept = static_cast<int64_t>(layers.size()) - keep;  // layers [0, first_kept) are recomputed
  auto [cos, sin] = model->rope(d.S, embed.scalar_type(), device);          // [S, D] each

  // AdamW by hand (kernels::adamw_step_: the fused AdamW's steps in float
  // math, one kernel per tensor with 16-byte accesses; PyTorch's multi-tensor
  // kernel does them in double, at about 2.6 TB/s on the H200); moments in
  // the parameters' dtype, as AdamW.
  std::vector<Tensor> params = model->parameters(), exp_avg, exp_avg_sq;
  std::vector<bool> is_mlp, is_emb;
  for (auto& item : model->named_parameters()) {
    is_mlp.push_back(item.key().find(".mlp.") != std::string::npos);
    is_emb.push_back(item.key().find("embed_tokens") != std::string::npos);
  }
  for (const auto& p : params) {
    exp_avg.push_back(torch::zeros_like(p));
    exp_avg_sq.push_back(torch::zeros_like(p));
  }
  Scratch scratch{torch::empty({static_cast<int64_t>(layers.size()), d.H + 2 * d.KV, d.H}, opts)};
  TrainResult result;
  Tensor loss;
  std::mt19937_64 rng(0x5EED1234ULL + static_cast<uint64_t>(batches[0][0][1].item<int64_t>()));
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& ids = batches[step];
    const bool last = step == num_steps - 1;
    std::vector<Saved> saved(layers.size());
    Tensor dx;
    {
      torch::NoGradGuard no_grad;  // by hand: autograd records nothing unless asked
      auto x0 = torch::embedding(embed, ids).view({d.T, d.H});  // [T, H]
      Tensor h, m;                                             // the running residual and the last MLP output [T, H]
      for (size_t i = 0; i < layers.size(); ++i) {
        const bool kept = static_cast<int64_t>(i) >= first_kept;
        const Tensor xa = i == 0 ? x0 : h, xb = i == 0 ? Tensor() : m;
        if (!kept) saved[i].x = xb.defined() ? xa + xb : xa;  // [T, H], rounded as the kernel rounds it
        Tensor h_next, m_next;
        layer_forward(layers[i], kept ? xa : saved[i].x, kept ? xb : Tensor(), cos, sin, d, scratch,
                      kept ? &saved[i] : nullptr, &h_next, &m_next);
        h = h_next;
        m = m_next;
      }
      x0 = Tensor();
      auto& norm = *model->model->norm;
      Tensor rstd, x;  // x = h + m, the last layer's output [T, H]
      auto hidden = K::rms_norm(h, norm.weight, norm.eps, &rstd, m, &x).view({d.B, d.S, d.H});  // [B, S, H]
      h = m = Tensor();
      Tensor logits;  // the last step's, returned [B, S-1, V]
      if (last) logits = torch::empty({d.B, d.S - 1, cfg.vocab_size}, opts);
      Tensor d_hidden, d_lm_head;
      loss = loss_head(hidden, model->lm_head_weight(), ids, logits, &d_hidden, &d_lm_head);
      add_grad(model->lm_head_weight(), d_lm_head);
      d_lm_head = Tensor();
      if (last) result.logits = logits;
      Tensor dnorm;
      dx = K::rms_norm_backward(d_hidden.view({d.T, d.H}), x, norm.weight, rstd, &dnorm);  // [T, H]
      add_grad(norm.weight, dnorm);
      hidden = x = d_hidden = Tensor();
      for (int64_t i = static_cast<int64_t>(layers.size()) - 1; i >= 0; --i) {
        if (!saved[i].complete) {  // recompute
          Tensor unused_h, unused_m;
          layer_forward(layers[i], saved[i].x, Tensor(), cos, sin, d, scratch, &saved[i], &unused_h, &unused_m);
        }
        Sketch sk;
        if (num_steps > 1 && step >= num_steps - SK_STEPS) sk = make_sketch(d.T, rng, dx.device());
        g_last_step = num_steps > 1 && step == num_steps - 1;
        dx = layer_backward(layers[i], dx, saved[i], cos, sin, d, scratch, sk);
      }
      add_grad(embed, torch::embedding_dense_backward(dx.view({d.B, d.S, d.H}), ids, cfg.vocab_size, -1, false));
    }
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) {
        if (!params[i].grad().defined()) continue;
        const bool sketched = num_steps > 1 && step >= num_steps - SK_STEPS;
        double lr = optimizer.lr;
        auto var = g_var.find(params[i].data_ptr());
        if (VFIX && sketched && var != g_var.end()) {
          auto& v = exp_avg_sq[i];
          // AdamW then gives v = beta2 v + (1 - beta2) max(g^2 - var, 0): never below beta2 v.
          auto g2 = params[i].grad().to(torch::kFloat32).square();
          v.copy_((v.to(torch::kFloat32) - torch::minimum(var->second, g2).mul_(VFIX * (1.0 - optimizer.beta2) / optimizer.beta2)).clamp_min_(0.0));
        }
        if (sketched && !is_mlp[i]) lr *= 1.0 + (is_emb[i] ? COVER_EMB : COVER);
        K::adamw_step_(params[i], params[i].grad(), exp_avg[i], exp_avg_sq[i], step + 1, lr, optimizer.beta1,
                       optimizer.beta2, optimizer.weight_decay, optimizer.eps);
        params[i].mutable_grad() = Tensor();
      }
    }
    g_var.clear();
    result.total_tokens += ids.numel();
    data.step_done();  // the weights after this step, for the trajectory check
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
