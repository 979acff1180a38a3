// Attack pass 31 (2026-12-06, session 41; fresh context, CPU; docs/attack-passes.md, 31), CLOSED in session 42 by
// the layers' record (train_api.h, version 6): it records each layer's residual and the MLP output it computed,
// and the judge reads that output against the MLP of the residual's norm: 0.032 to 0.033 against
// layer_forward_error 0.01 (README, Verification, "The layers' record"; docs/measurements/2026-12-06-layer-record.md).
// expect: layer_record
// The tuned example with the MLP's down projection in the forward taking only each
// position's largest 75% of silu(gate) up (every layer but the last, whose error would reach the loss head's recorded
// input at once); the backward is the dense model's. 2.16% of a 7B step's multiply-adds by arithmetic, 0.54% of the
// tiny run's; no faster as written (unstructured 25% sparsity speeds no real product).
// Re-run by the session: `bin/tournament local-bench test/plugins-open/a31_mlp_fwd_small_terms.cpp --runs 2 --seed S
// --json` with S = 31090 (run 2 REJECTED: attention trajectory 105 against 75), 31100 and 31110 (ACCEPTED, 4 of 4:
// loss-head input 0.0154 to 0.0157 against 0.021, MLP 9.1 to 11.5, attention 23 to 69). With the pass's 4 of 4: 9 of
// 10 runs accepted, 4 of 5 evaluations.
// The pass's own notes follow.
// MEASURED (the loss head's recorded input is the only check that binds):
//   LAST_DENSE 1, DROP_FRAC 0.25 (a31_down_fwd_sparse_ld_0.25.cpp): ACCEPTED 4 of 4 runs (2 evaluations)
//     bin/tournament local-bench pass31/a31_down_fwd_sparse_ld_0.25.cpp --runs 2 --seed 31070   (and --seed 31080)
//     head input 0.0155 / 0.0164 / 0.0162 / 0.0159 (limit 0.021), MLP trajectory 8.7-11.9 (26), attention 27-45 (75),
//     cell 0.0073-0.0081 (0.0194), logits 0.0145-0.015 (0.024), update 0.058-0.060 (0.16), head grad 0, lm_head traj 0.
//     Saved: 7B 0.25 x 27/28 x 8.96% = 2.16% of a step's multiply-adds; tiny (layer 0 only) 0.54%.
//   LAST_DENSE 1, DROP_FRAC 0.3 (a31_down_fwd_sparse_ld_0.3.cpp): ACCEPTED 4 of 4 runs (seeds 31050, 31060), thin:
//     head input 0.0201 / 0.0205 / 0.0200 / 0.0203 (limit 0.021), MLP 12.4-15.9, attention 42-60. 7B 2.59%, tiny 0.65%.
//   every layer sparse, 0.3 (a31_down_fwd_sparse_all_layers_0.3.cpp): REJECTED 2 of 2 (seed 31040), head input 0.0222 / 0.0223,
//     every other check passed (MLP 9.0-10.0, attention 43-59).
// PASS 31, attempt 3 (a31_down_fwd_sparse): the MLP's down projection in the FORWARD
// takes only each position's largest (1 - DROP_FRAC) entries of silu(gate) * up; the
// backward is the tuned example's, exact for the dense model at those activations.
// Work saved by arithmetic: DROP_FRAC of down_proj's forward product:
// With LAST_DENSE the last layer's down product stays dense (its error would go straight
// into the loss head's recorded input): 7B: DROP_FRAC x 27/28 x 8.96% of a step
// (0.3: 2.59%, 0.5: 4.32%); tiny (2 layers): layer 0 only, see the report.
// A tuned submission: what the contract allows beyond the baseline, in plain
// libtorch plus the engine's fused kernels (tournament/kernels.h). It computes
// what local_test/train.cpp computes, and rounds where it rounds in all the
// elementwise work (the fused kernels reproduce the unfused ops' bf16
// roundings); it is verified against it like any submission. Faster because it
//   - runs the training step by hand instead of through autograd: a forward
//     loop over the layers that keeps exactly what backward needs, and a
//     backward loop in reverse (autograd only inside flash attention);
//   - the loss head as the reference's linear_cross_entropy, with its
//     log-softmax, gradient and loss in one kernel pass, and each of its
//     three products over all rows at once (no chunks);
//   - one fused kernel for each elementwise stage: RMSNorm with the residual
//     add before it (forward: one pass writes the sum and the normalised rows;
//     backward: one pass gives dx, the residual's gradient added, and the
//     weight's gradient per block of rows), rotary embedding in place on the
//     q/k/v product (backward: straight into the fused product's gradient, no
//     cat), SwiGLU (backward: one pass turns d(silu(gate) up), gate and up into
//     silu(gate) up, d gate and d up in place). The unfused ops make 3 to 10
//     passes over [T, I] or [T, H] tensors each; the norms' outputs are kept
//     for backward (recomputing them cost 56 passes a step);
//   - fuses the q/k/v projections into one matrix product (their weights are
//     concatenated into a per-layer scratch buffer once per step, in forward,
//     and read again in backward; the
//     gradient comes out as one tensor whose slices are the parameters'
//     gradients). Gate and up stay two products: on the H200 one product of
//     twice the width ran slower than the two (2026-12-02, gpu-perf.sh);
//   - keeps every layer's activations when memory allows, recomputing a
//     layer's forward in backward otherwise;
//   - steps AdamW tensor by tensor with a kernel of its own (the fused
//     AdamW's steps in float math; kernels::adamw_step_);
//   - takes all batches up front and reads the loss once at the end.
// It records its loss head's input and gradient itself (data.record_loss_head,
// train_api.h version 5): model->hidden_states, which would, is not called.
// Every matrix product goes through matmul_acc32 / linear_acc32 (model.h):
// on the GPU exactly torch's, on a CPU without AVX-512 accumulated in float32
// as the reference's are (libtorch's own would accumulate in bf16 there).
// Shapes: T = B * S tokens, H hidden, I intermediate, Nq / Nkv heads, D head
// dim, KV = Nkv * D.
#include <tournament/train_api.h>
#include <tournament/kernels.h>

#include <algorithm>
#include <functional>

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

#ifndef DROP_FRAC
#define DROP_FRAC 0.25
#endif
// CHEAT: per position, the DROP_FRAC smallest |silu(gate) up| entries are left out of
// down_proj's forward product; the backward is the dense model's (as the tuned example).
#ifndef LAST_DENSE
#define LAST_DENSE 1
#endif
static bool g_sparse = true;  // false in the last layer when LAST_DENSE (its error goes straight into the loss head's input)
Tensor topk_keep(const Tensor& act) {
  const int64_t I = act.size(1), k = std::max<int64_t>(1, static_cast<int64_t>(DROP_FRAC * I));
  auto mag = act.abs().to(torch::kFloat32);
  auto thr = std::get<0>(mag.kthvalue(k, 1, true));              // [T, 1]
  return (mag > thr).to(act.scalar_type());
}

// The layer's input is x = xa + xb (the previous layer's residual h and its
// MLP output, summed inside the first norm's kernel, one rounding as the
// reference's add), or xa alone (xb undefined: the embeddings). Returns the
// layer's output as the same two parts: *h_out [T, H] and the MLP's output
// *m_out [T, H]. With `save`, fills it for backward (x included). With
// `record`, hands it the residual after the attention and the MLP's output
// (the layers' record).
using LayerRecord = std::function<void(const Tensor& residual, const Tensor& mlp_output)>;
void layer_forward(const Layer& L, const Tensor& xa, const Tensor& xb, const Tensor& cos, const Tensor& sin,
                   const Dims& d, Scratch& scratch, Saved* save, Tensor* h_out, Tensor* m_out,
                   const LayerRecord& record = {}) {
  Tensor x, rstd1, rstd2, h;
  const auto& norm1 = *L.m->input_layernorm;
  const auto& norm2 = *L.m->post_attention_layernorm;
  auto n1 = K::rms_norm(xa, norm1.weight, norm1.eps, &rstd1, xb, &x);          // [T, H]; x = xa + xb [T, H]
  auto qkv = linear_acc32(n1, L.build_qkv_weight(scratch), L.qkv_bias());       // [T, H + 2 KV]
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
  auto o = matmul_acc32(a, L.attn().o_proj->weight.t());                        // [T, H]
  auto n2 = K::rms_norm(x, norm2.weight, norm2.eps, &rstd2, o, &h);             // [T, H]; h = x + o [T, H]
  o = Tensor();
  auto gate = matmul_acc32(n2, L.mlp().gate_proj->weight.t());                  // [T, I]
  auto up = matmul_acc32(n2, L.mlp().up_proj->weight.t());                      // [T, I]
  auto act = K::swiglu(gate, up);                                               // [T, I]
  *m_out = matmul_acc32(g_sparse ? act * topk_keep(act) : act, L.mlp().down_proj->weight.t());  // CHEAT: [T, H] from the sparse activation
  if (record) record(h, *m_out);
  *h_out = h;
  if (save) *save = Saved{x, rstd1, n1, q, k, v, attn, a, h, rstd2, n2, gate, up, true};
}

// dy [T, H], the gradient of the layer's output x + h-path + m -> dx [T, H];
// sets the layer's parameter gradients and frees `s`; *mlp_input_grad [T, H]
// the gradient of the MLP's input (the layers' record).
Tensor layer_backward(const Layer& L, const Tensor& dy, Saved& s, const Tensor& cos, const Tensor& sin, const Dims& d,
                      Scratch& scratch, Tensor* mlp_input_grad) {
  // MLP: y = h + down(silu(gate) * up), gate / up = n2 W^T, n2 = norm(h)
  const auto& norm2 = *L.m->post_attention_layernorm;
  auto w_down = L.mlp().down_proj->weight;
  auto dp = matmul_acc32(dy, w_down);                            // [T, I], d(silu(gate) up)
  K::swiglu_backward_(dp, s.gate, s.up);                         // in place: dp <- silu(gate) up, gate <- d gate, up <- d up
  add_grad(w_down, matmul_acc32(dy.t(), dp));                    // [H, I]
  dp = Tensor();
  auto n2 = std::move(s.n2);                                     // [T, H]
  auto w_gate = L.mlp().gate_proj->weight, w_up = L.mlp().up_proj->weight;
  add_grad(w_gate, matmul_acc32(s.gate.t(), n2));                // [I, H]
  add_grad(w_up, matmul_acc32(s.up.t(), n2));                    // [I, H]
  n2 = Tensor();
  auto dn2 = matmul_acc32(s.gate, w_gate);                       // [T, H]
  dn2 = linear_acc32(s.up, w_up.t(), dn2);                       // + the second product, added by cuBLAS (addmm, beta = 1; autograd rounds it to bf16 first)
  *mlp_input_grad = dn2;                                         // [T, H], the layers' record
  s.gate = Tensor();
  s.up = Tensor();
  Tensor dln;
  auto dh = K::rms_norm_backward(dn2, s.h, norm2.weight, s.rstd2, &dln, /*residual_grad=*/dy);  // [T, H]
  add_grad(norm2.weight, dln);
  dn2 = Tensor();

  // Attention: h = x + o_proj(attention(rope(q), rope(k), v))
  auto w_o = L.attn().o_proj->weight;
  add_grad(w_o, matmul_acc32(dh.t(), s.a));                      // [H, H]
  auto da = matmul_acc32(dh, w_o).view({d.B, d.S, d.Nq, d.D}).transpose(1, 2);  // [B, Nq, S, D]
  auto g = torch::autograd::grad({s.attn}, {s.q, s.k, s.v}, {da});
  da = Tensor();
  auto dqkv = K::rope_qkv_backward(g[0].transpose(1, 2), g[1].transpose(1, 2), g[2].transpose(1, 2), cos, sin);  // [T, H + 2 KV]
  g.clear();
  const auto& norm1 = *L.m->input_layernorm;
  auto n1 = std::move(s.n1);                                     // [T, H]
  auto dw_qkv = matmul_acc32(dqkv.t(), n1);                      // [H + 2 KV, H]
  n1 = Tensor();
  auto db_qkv = dqkv.sum(0);                                     // [H + 2 KV]
  auto& at = L.attn();
  add_grad(at.q_proj->weight, dw_qkv.narrow(0, 0, d.H));
  add_grad(at.k_proj->weight, dw_qkv.narrow(0, d.H, d.KV));
  add_grad(at.v_proj->weight, dw_qkv.narrow(0, d.H + d.KV, d.KV));
  add_grad(at.q_proj->bias, db_qkv.narrow(0, 0, d.H));
  add_grad(at.k_proj->bias, db_qkv.narrow(0, d.H, d.KV));
  add_grad(at.v_proj->bias, db_qkv.narrow(0, d.H + d.KV, d.KV));
  auto dn1 = matmul_acc32(dqkv, L.qkv_weight(scratch));          // [T, H]
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
  auto g = matmul_acc32(h, weight.t());                           // [N, V]: the logits, then their gradient
  if (logits_out.defined()) logits_out.view({N, V}).copy_(g);
  auto row_logp = torch::empty({N}, g.options().dtype(torch::kFloat32));  // [N]
  K::cross_entropy_grad_(g, targets, inv_n, row_logp);
  *d_hidden = torch::zeros_like(hidden);                          // [B, S, H]
  d_hidden->narrow(1, 0, S - 1).copy_(matmul_acc32(g, weight).view({B, S - 1, H}));
  *d_weight = matmul_acc32(g.t(), h);                             // [V, H]
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
        g_sparse = !(LAST_DENSE && i + 1 == layers.size());
        layer_forward(layers[i], kept ? xa : saved[i].x, kept ? xb : Tensor(), cos, sin, d, scratch,
                      kept ? &saved[i] : nullptr, &h_next, &m_next, [&](const Tensor& res, const Tensor& out) {
                        data.record_layer(static_cast<int64_t>(i), ids, res.view({d.B, d.S, d.H}), out.view({d.B, d.S, d.H}));
                      });
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
      data.record_loss_head(ids, hidden, d_hidden);  // the layers are by hand, so hidden_states cannot record it
      if (last) result.logits = logits;
      Tensor dnorm;
      dx = K::rms_norm_backward(d_hidden.view({d.T, d.H}), x, norm.weight, rstd, &dnorm);  // [T, H]
      add_grad(norm.weight, dnorm);
      hidden = x = d_hidden = Tensor();
      for (int64_t i = static_cast<int64_t>(layers.size()) - 1; i >= 0; --i) {
        if (!saved[i].complete) {  // recompute
          Tensor unused_h, unused_m;
          g_sparse = !(LAST_DENSE && i + 1 == static_cast<int64_t>(layers.size()));
          layer_forward(layers[i], saved[i].x, Tensor(), cos, sin, d, scratch, &saved[i], &unused_h, &unused_m);
        }
        const auto out_grad = dx;  // the layer's output gradient is its MLP output's
        Tensor in_grad;
        dx = layer_backward(layers[i], dx, saved[i], cos, sin, d, scratch, &in_grad);
        data.record_layer_grad(i, ids, out_grad.view({d.B, d.S, d.H}), in_grad.view({d.B, d.S, d.H}));
      }
      add_grad(embed, torch::embedding_dense_backward(dx.view({d.B, d.S, d.H}), ids, cfg.vocab_size, -1, false));
    }
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
          K::adamw_step_(params[i], params[i].grad(), exp_avg[i], exp_avg_sq[i], step + 1, optimizer.lr,
                         optimizer.beta1, optimizer.beta2, optimizer.weight_decay, optimizer.eps);
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
