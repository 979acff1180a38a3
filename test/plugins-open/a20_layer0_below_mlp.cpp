// Attack pass 20 (session 34, fresh context, CPU, against the trajectory check): the work of layer 0's backward
// that feeds ONLY kinds the trajectory does not judge. In layer 0 (the first decoder layer) the MLP's
// weight gradients (gate/up/down: judged by the trajectory) need only the layer's output gradient
// and its forward activations. Everything below them -- the MLP's input-gradient products
// dn2 = dgate Wg + dup Wu, the post-attention norm's backward, the whole attention backward (o_proj,
// scores, q/k/v) and the input norm's backward -- reaches only layer 0's attention weights and biases,
// its two norm weights (bf16 1.0: they never move) and the embedding. The trajectory reads those as
// information only, and the judge repeats each step from the RECORDED weights, so a wrong
// attention/embedding step never reaches the judged MLP/lm_head readings either (confirmed below:
// MLP trajectory 4.2-7.5 against 26, lm_head 0.23-0.41 against 1.25, while the attention's
// information reading goes to 285-1,898, the tuned example's 11-16). What does see it: the final-weight
// checks, chiefly batch_loss (a batch's own descent) and the embedding's kind update error.
//
// Base: local_test/examples/tuned.cpp (exact elsewhere). Knobs (macros at the top):
//   CUT_MODE 0: in the cheat steps skip ALL of layer 0 below its MLP weight gradients (attention-0
//               weights get the last exact step's gradient again, the embedding the residual path only);
//            1: skip only dn2 (the residual path carries the gradient into attention 0 and the embedding);
//            2: skip only layer 0's attention weight-gradient products (q/k/v fused, o_proj): stale.
//   CHEAT_MASK: 0-based steps cheated (a bitmask); EMB_MULT: the embedding's AdamW lr multiplier in the
//   cheat steps (to cover the lost descent), each element clamped to within 0.98 lr of its decayed
//   start so the reach rule ("unreachable") holds.
//
// Work share (multiply-adds by hand, validator CPU shape: tiny model, 5 steps of 16 x 128, T = 2048,
// H = 128, I = 352, KV = 64; a step ~4,066M MACs as counted in a12_head_dx_lintail.cpp, run ~20.33G):
//   dn2 = 2 T I H = 184.5M per step (0.91% of the run); CUT_MODE 0 also skips dWo 33.6M, dA = dh Wo
//   33.6M, the score backward 67.1M (causal half), dW_qkv 67.1M, dn1 67.1M: 452.5M per step (2.23%);
//   CUT_MODE 2: 100.7M per step (0.50%). As set below (CUT_MODE 1, steps 1-3, EMB_MULT 1.15): 553.5M =
//   2.72% of the run (the clamp is elementwise, no products). On a 7B run layer 0 is 1 of 28 layers:
//   well under 2% there.
//
// RESULTS (2026-12-05, this 2-core AVX-512 CPU; every variant REJECTED in every run):
//   bin/tournament local-bench FILE --runs 2 --seed S --json   (variants = this file with the macros set)
//   CUT_MODE 0, CHEAT_MASK 4 (2.23%), S = 20001: batch_loss 0.034 / 0.039 (allowed 0.0019), probe 0.0050 /
//     0.0080 (0.0027), cell 0.030 / 0.040 (0.0194), embedding kind 0.39 (0.38), layer_positions 1.10 / 1.46 (1).
//   CUT_MODE 2, CHEAT_MASK 4 (0.50%), S = 20001: batch_loss 0.0090 / 0.0101, layer_positions 1.06 / 1.45.
//   CUT_MODE 1, CHEAT_MASK 4 (0.91%), S = 20001: batch_loss 0.0041 / 0.0054 only (everything else passed:
//     embedding kind 0.25, MLP trajectory 4.4 / 6.0).
//   CUT_MODE 1, CHEAT_MASK 1 (step 0, not read by the trajectory) / 3: worse (batch 0.0085-0.012, cell
//     0.021-0.023, embedding kind 0.52-0.61, update 0.19-0.22): the first step is a sign step, a flip costs 2 lr.
//   CUT_MODE 1, CHEAT_MASK 4, EMB_MULT 1.5 / 2.0 without the clamp: `unreachable` (3,500 / 24,700 elements)
//     and the probe over-shot (-0.004 to -0.013).
//   AS SET (CUT_MODE 1, CHEAT_MASK 0xE, EMB_MULT 1.15, clamped; 2.72%) -- the NEAR MISS:
//     S = 20001: runs 20001 / 20002 REJECTED: embedding kind 0.498 / 0.489 (allowed 0.38), update 0.174 /
//       0.175 (0.16); run 20002 also cell 0.0196 (0.0194). Passing: batch -0.0003 / +0.0007 (0.0019),
//       probe -0.0026 / -0.0012 (0.0027), logits 0.019 / 0.020, MLP trajectory 5.2 / 6.0 (26), lm_head
//       trajectory 0.28 / 0.34 (1.25), layer positions <= 0.50, MLP pair 0.15 / 0.18, group <= 0.0009.
//     S = 20101: runs 20101 / 20102 REJECTED: embedding kind 0.492 / 0.497, update 0.172 / 0.179; the rest
//       passed (batch -0.0001 / -0.0022, probe -0.0014 / -0.0022, cell 0.018, MLP trajectory 7.1 / 7.5).
//     S = 20201 (this file as committed): runs 20201 / 20202 REJECTED: embedding kind 0.507 / 0.511,
//       update 0.177 / 0.177; run 20201 cell 0.0199 (0.0194), run 20202 probe -0.0030 (0.0027); batch
//       +0.0008 / +0.0009 passed.
//   What stops it: the embedding's kind update error (its gradient loses the MLP-0 path) and the whole
//   update error; the batch-loss check catches the lost descent unless it is covered, and the cover moves
//   the probe about as far as the batch (so only a small cover fits under the probe limit).
//   The adversarial suite's shape (3 steps of 4 rows, the same file: steps 1 and 2 of 0..2 cheated, about
//   3% of that run): `local-bench FILE --steps 3 --warmup-steps 1 --batch-size 4 --runs 3 --seed 62000`
//   ACCEPTED 3 of 3 (embedding kind 0.082 to 0.094 against 0.38, update 0.043 to 0.044; the attention's
//   trajectory 11.6 to 22.5, as the tuned example's 8.7 to 22.0). Not the validator's shape: there it is
//   rejected in every run (above). Kept here, not in the suite, for that reason (session 34).
// expect: (none in the suite's shape: accepted there)
#ifndef CUT_MODE
#define CUT_MODE 1
#endif
#ifndef CHEAT_MASK
#define CHEAT_MASK 0xE
#endif
#ifndef EMB_MULT
#define EMB_MULT 1.15
#endif
#include <tournament/train_api.h>
#include <tournament/kernels.h>

#include <algorithm>

#ifndef CHEAT_MASK
#define CHEAT_MASK 0x4  // 0-based steps whose layer-0 backward below the MLP weights is skipped
#endif
#ifndef CUT_MODE
#define CUT_MODE 0  // 0: all of layer 0 below its MLP weights; 1: its MLP input-gradient products only; 2: its attention weight gradients only
#endif
#ifndef EMB_MULT
#define EMB_MULT 1.0  // the embedding's AdamW lr multiplier in the cheat steps (covering the shortfall)
#endif
#ifndef EMB_MODE
#define EMB_MODE 0  // cheat step's embedding gradient: 0 residual path only, 1 stale, 2 residual + stale branch part
#endif

using namespace tournament;
namespace K = tournament::kernels;
using torch::Tensor;

namespace {

// Sets a parameter's gradient, or adds to it (a tied embedding gets two).
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

// What backward needs of one layer, the norms' outputs included (their weight
// gradients' products read them). A checkpointed layer keeps only x.
struct Saved {
  Tensor x, rstd1, n1;          // input [T, H], its norm's row scales [T] float32 and output [T, H]
  Tensor q, k, v, attn;         // attention's leaves [B, N, S, D] (views of the q/k/v product) and output; autograd holds flash's state
  Tensor a;                     // attention output [T, H]
  Tensor h, rstd2, n2;          // residual after attention [T, H], its norm's row scales [T] and output [T, H]
  Tensor gate, up;              // the MLP's [T, I] products
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
  *m_out = K::swiglu(gate, up).mm(L.mlp().down_proj->weight.t());               // [T, H]
  *h_out = h;
  if (save) *save = Saved{x, rstd1, n1, q, k, v, attn, a, h, rstd2, n2, gate, up, true};
}

// dy [T, H], the gradient of the layer's output x + h-path + m -> dx [T, H];
// sets the layer's parameter gradients and frees `s`.
Tensor layer_backward(const Layer& L, const Tensor& dy, Saved& s, const Tensor& cos, const Tensor& sin, const Dims& d,
                      Scratch& scratch, bool cut = false) {
  // MLP: y = h + down(silu(gate) * up), gate / up = n2 W^T, n2 = norm(h)
  const auto& norm2 = *L.m->post_attention_layernorm;
  auto w_down = L.mlp().down_proj->weight;
  auto dp = dy.mm(w_down);                                       // [T, I], d(silu(gate) up)
  K::swiglu_backward_(dp, s.gate, s.up);                         // in place: dp <- silu(gate) up, gate <- d gate, up <- d up
  add_grad(w_down, dy.t().mm(dp));                               // [H, I]
  dp = Tensor();
  auto n2 = std::move(s.n2);                                     // [T, H]
  auto w_gate = L.mlp().gate_proj->weight, w_up = L.mlp().up_proj->weight;
  add_grad(w_gate, s.gate.t().mm(n2));                           // [I, H]
  add_grad(w_up, s.up.t().mm(n2));                               // [I, H]
  n2 = Tensor();
  if (cut && CUT_MODE == 0) {  // THE CHEAT: nothing below the MLP weight gradients
    s = Saved();
    return dy;
  }
  Tensor dln, dh;
  if (cut && CUT_MODE == 1) {
    dh = dy;  // the MLP branch input gradient skipped: residual path only
  } else {
  auto dn2 = s.gate.mm(w_gate);                                  // [T, H]
  dn2.addmm_(s.up, w_up);                                        // + the second product, added by cuBLAS (beta = 1; autograd rounds it to bf16 first)
  s.gate = Tensor();
  s.up = Tensor();
  dh = K::rms_norm_backward(dn2, s.h, norm2.weight, s.rstd2, &dln, /*residual_grad=*/dy);  // [T, H]
  add_grad(norm2.weight, dln);
  dn2 = Tensor();
  }
  const bool dw_skip = cut && CUT_MODE == 2;

  // Attention: h = x + o_proj(attention(rope(q), rope(k), v))
  auto w_o = L.attn().o_proj->weight;
  if (!dw_skip) add_grad(w_o, dh.t().mm(s.a));                                 // [H, H]
  auto da = dh.mm(w_o).view({d.B, d.S, d.Nq, d.D}).transpose(1, 2);  // [B, Nq, S, D]
  auto g = torch::autograd::grad({s.attn}, {s.q, s.k, s.v}, {da});
  da = Tensor();
  auto dqkv = K::rope_qkv_backward(g[0].transpose(1, 2), g[1].transpose(1, 2), g[2].transpose(1, 2), cos, sin);  // [T, H + 2 KV]
  g.clear();
  const auto& norm1 = *L.m->input_layernorm;
  auto n1 = std::move(s.n1);                                     // [T, H]
  auto& at = L.attn();
  if (!dw_skip) {
  auto dw_qkv = dqkv.t().mm(n1);                                 // [H + 2 KV, H]
  auto db_qkv = dqkv.sum(0);                                     // [H + 2 KV]
  add_grad(at.q_proj->weight, dw_qkv.narrow(0, 0, d.H));
  add_grad(at.k_proj->weight, dw_qkv.narrow(0, d.H, d.KV));
  add_grad(at.v_proj->weight, dw_qkv.narrow(0, d.H + d.KV, d.KV));
  add_grad(at.q_proj->bias, db_qkv.narrow(0, 0, d.H));
  add_grad(at.k_proj->bias, db_qkv.narrow(0, d.H, d.KV));
  add_grad(at.v_proj->bias, db_qkv.narrow(0, d.H + d.KV, d.KV));
  }
  n1 = Tensor();
  auto dn1 = dqkv.mm(L.qkv_weight(scratch));                    // [T, H]
  dqkv = Tensor();
  auto dx = K::rms_norm_backward(dn1, s.x, norm1.weight, s.rstd1, &dln, /*residual_grad=*/dh);  // [T, H]
  add_grad(norm1.weight, dln);
  s = Saved();
  return dx;
}

// The loss head: linear_cross_entropy's arithmetic (model.cpp) by hand, with
// log-softmax, its gradient and the loss in one kernel pass
// (kernels::cross_entropy_grad_) instead of five passes over [rows, V]
// float32 tensors, and each of the three products over all N rows at once:
// the logits in bf16 (row by row what the reference's 2,048-row chunks
// compute), their gradient rounded to bf16 in place, d hidden = g W, d W =
// g^T h. The reference takes d W in chunks, each chunk's product rounded to
// bf16 and the chunks summed in float32; here cuBLAS sums all rows in float32
// and rounds once (closer to the exact sum; one product instead of eight and
// their sum). Memory: the [N, V] bf16 gradient (5 GB at 16 x 1024 and
// V = 152,064).
// hidden [B, S, H] (after the final norm), weight [V, H], ids [B, S] ->
// the loss (float32 scalar); *d_hidden [B, S, H] (zero at the last position),
// *d_weight [V, H]; the logits [B, S-1, V] into logits_out when defined.
Tensor loss_head(const Tensor& hidden, const Tensor& weight, const Tensor& ids, const Tensor& logits_out,
                 Tensor* d_hidden, Tensor* d_weight) {
  const int64_t B = ids.size(0), S = ids.size(1), H = hidden.size(-1), V = weight.size(0);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});          // [N, H], N = B (S-1)
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});           // [N]
  const int64_t N = h.size(0);
  const double inv_n = 1.0 / static_cast<double>(N);
  auto g = h.mm(weight.t());                                      // [N, V]: the logits, then their gradient
  if (logits_out.defined()) logits_out.view({N, V}).copy_(g);
  auto row_logp = torch::empty({N}, g.options().dtype(torch::kFloat32));  // [N]
  K::cross_entropy_grad_(g, targets, inv_n, row_logp);
  *d_hidden = torch::zeros_like(hidden);                          // [B, S, H]
  d_hidden->narrow(1, 0, S - 1).copy_(g.mm(weight).view({B, S - 1, H}));
  *d_weight = g.t().mm(h);                                        // [V, H]
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
  const int64_t per_layer = d.T * (e * (7 * d.H + 2 * d.KV + 2 * d.I) + 4 * (2 + d.Nq));
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
  // The moments start uninitialised: a tensor's first step writes them without
  // reading (kernels::adamw_first_step_, zero moments' result bit for bit).
  std::vector<Tensor> params = model->parameters(), exp_avg, exp_avg_sq;
  std::vector<char> fresh(params.size(), 1);
  for (const auto& p : params) {
    exp_avg.push_back(torch::empty_like(p));
    exp_avg_sq.push_back(torch::empty_like(p));
  }
  Scratch scratch{torch::empty({static_cast<int64_t>(layers.size()), d.H + 2 * d.KV, d.H}, opts)};
  TrainResult result;
  Tensor loss;
  // The stale gradients: layer 0's attention weights and biases and its norms.
  std::vector<std::pair<Tensor, Tensor>> stale;
  {
    auto* l0 = layers[0].m;
    for (auto p : {l0->self_attn->q_proj->weight, l0->self_attn->k_proj->weight, l0->self_attn->v_proj->weight,
                   l0->self_attn->o_proj->weight, l0->self_attn->q_proj->bias, l0->self_attn->k_proj->bias,
                   l0->self_attn->v_proj->bias, l0->input_layernorm->weight, l0->post_attention_layernorm->weight})
      stale.push_back({p, Tensor()});
  }
  Tensor stale_emb, stale_emb_branch;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& ids = batches[step];
    const bool last = step == num_steps - 1;
    const bool cheat = ((CHEAT_MASK >> step) & 1) && (step > 0 || CUT_MODE == 1) && num_steps >= 5;
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
      Tensor dx_res;
      for (int64_t i = static_cast<int64_t>(layers.size()) - 1; i >= 0; --i) {
        if (i == 0) dx_res = dx;
        if (!saved[i].complete) {  // recompute
          Tensor unused_h, unused_m;
          layer_forward(layers[i], saved[i].x, Tensor(), cos, sin, d, scratch, &saved[i], &unused_h, &unused_m);
        }
        dx = layer_backward(layers[i], dx, saved[i], cos, sin, d, scratch, cheat && i == 0);
      }
      auto demb = torch::embedding_dense_backward(dx.view({d.B, d.S, d.H}), ids, cfg.vocab_size, -1, false);
      if (cheat) {
        // layer 0's attention (and norms): the last exact step's gradients again
        for (auto& [p, g] : stale) if (g.defined() && !p.grad().defined()) add_grad(p, g.clone());
        if (EMB_MODE == 1 && stale_emb.defined()) demb = stale_emb.clone();
        if (EMB_MODE == 2 && stale_emb_branch.defined()) demb = demb + stale_emb_branch;
      } else {
        for (auto& [p, g] : stale) g = p.grad().defined() ? p.grad().clone() : Tensor();
        stale_emb = demb.clone();
        if (EMB_MODE == 2) {
          stale_emb_branch = demb - torch::embedding_dense_backward(dx_res.view({d.B, d.S, d.H}), ids, cfg.vocab_size, -1, false);
        }
      }
      add_grad(embed, demb);
    }
    const bool cheat_now = cheat;
    data.wait_recorded();  // the previous step's weights were copied out beside this step's work
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) {
        if (!params[i].grad().defined()) continue;
        if (fresh[i] && step == 0) {
          K::adamw_first_step_(params[i], params[i].grad(), exp_avg[i], exp_avg_sq[i], optimizer.lr, optimizer.beta1,
                               optimizer.beta2, optimizer.weight_decay, optimizer.eps);
        } else {
          if (fresh[i]) {  // first gradient after step 1: zero moments, as they would have stayed
            exp_avg[i].zero_();
            exp_avg_sq[i].zero_();
          }
          const bool boost = cheat_now && params[i].is_same(embed) && EMB_MULT != 1.0;
          const double lr_i = boost ? optimizer.lr * EMB_MULT : optimizer.lr;
          Tensor before = boost ? params[i].to(torch::kFloat32) : Tensor();
          K::adamw_step_(params[i], params[i].grad(), exp_avg[i], exp_avg_sq[i], step + 1, lr_i,
                         optimizer.beta1, optimizer.beta2, optimizer.weight_decay, optimizer.eps);
          if (boost) {  // keep every element within one AdamW step of where it was (the reach rule)
            auto base = before * (1.0 - optimizer.lr * optimizer.weight_decay);
            auto moved = params[i].to(torch::kFloat32);
            params[i].copy_(torch::max(torch::min(moved, base + 0.98 * optimizer.lr), base - 0.98 * optimizer.lr));
          }
        }
        fresh[i] = 0;
        params[i].mutable_grad() = Tensor();
      }
    }
    result.total_tokens += ids.numel();
    data.step_done();  // the weights after this step, for the trajectory check
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
