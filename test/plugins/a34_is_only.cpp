// Attack pass 34 (2026-12-06, session 42; fresh context, CPU; docs/attack-passes.md, 34): the MLP's small terms
// dropped without bias at the two links (2.36% of a 7B step), ACCEPTED by layer_small_term_share (it reads the error's
// mean along the small-term part; an unbiased drop has none). Closed in session 43 by layer_small_term_energy: the
// error's excess along the small terms' weight vectors, 0.0041 against 0.0005 (honest at most 6.9e-5;
// docs/measurements/2026-12-06-small-terms.md).
// expect: layer_record
// The pass's own notes follow.
// Attack pass 34 (CPU, against layer_small_term_share). IS only: forward 14% quantile, dx 16% quantile, no weight-gradient drop (>= 0.07x8.83 + 0.08x17.66 = 2.03%).
// F_FWD/F_DX: unbiased importance-sampled drop (keep prob |t|/tau below each position's F quantile tau, kept terms
// scaled to sign*tau): the error is zero-mean, not along the small-term part. F_DW: magnitude drop in the three
// MLP weight gradients (not read by the small-term share).
#define F_FWD 0.14
#define F_DX 0.16
#define F_DW 0.0
#define FWD_LAST 1
#ifndef SKIP_MIN
#define SKIP_MIN 0.5
#endif
#include <cstdio>
// Pass 33: MLP small terms dropped on the reference's own arithmetic (F_FWD, F_DX, F_DW below).
// Pass 33 base: the reference's arithmetic exactly (the engine's modules and autograd, layer by layer), with
// every layer's intermediates in hand so that a cheat can replace one piece. Each cheat file defines hooks
// before including this.
#include <tournament/train_api.h>
#include <algorithm>
#include <functional>
#include <cmath>
using namespace tournament;
using torch::Tensor;

namespace p33 {
inline Tensor rotate_half(const Tensor& x) { auto h = x.chunk(2, -1); return torch::cat({-h[1], h[0]}, -1); }
inline Tensor rope(const Tensor& x, const Tensor& c, const Tensor& s) { return x * c + rotate_half(x) * s; }

// What a layer's backward hands a cheat: the exact intermediates (T = B*S rows).
struct LayerGrads {
  int64_t layer, step, steps;
  Tensor n1, dq, dk, dv, a, dh;        // [T,H] n1; [T,H] dq (q_proj out grad); [T,KV] dk, dv; [T,H] a (o_proj input); [T,H] dh (o_proj out grad)
  Tensor gWq, gbq, gWk, gbk, gWv, gbv, gWo;  // exact
};
}  // namespace p33


#ifndef F_FWD
#define F_FWD 0.0
#endif
#ifndef F_DX
#define F_DX 0.0
#endif
#ifndef F_DW
#define F_DW 0.0
#endif
#ifndef FWD_LAST
#define FWD_LAST 1
#endif
namespace p33 {
// t [..., I] with each position's smallest fraction f (by magnitude) zeroed.
inline Tensor drop_small(const Tensor& t, double f) {
  const int64_t I = t.size(-1), k = static_cast<int64_t>(f * I);
  if (k <= 0) return t;
  auto mag = t.abs().to(torch::kFloat32);
  auto thr = std::get<0>(mag.kthvalue(k, -1, true));
  return t.masked_fill(mag <= thr, 0);
}

// Unbiased importance-sampled drop: below tau (each position's f quantile of |t|) keep each term with probability
// |t|/tau and scale it to sign(t)*tau; expected value unchanged, so the error has no component along any fixed part.
static double g_skip = 0, g_all = 0;
inline Tensor drop_is(const Tensor& t, double f) {
  const int64_t I = t.size(-1), k = static_cast<int64_t>(f * I);
  if (k <= 0) return t;
  auto tf = t.to(torch::kFloat32);
  auto mag = tf.abs();
  auto tau = std::get<0>(mag.kthvalue(k, -1, true)).clamp_min(1e-30);
  auto pi = (mag / tau).clamp_max(1.0);
  auto keep = torch::rand_like(mag) < pi;
  auto val = torch::where(mag < tau, torch::sign(tf) * tau, tf);
  g_skip += (1.0 - pi).sum().item<double>(); g_all += f * static_cast<double>(mag.numel());
  return torch::where(keep, val, torch::zeros_like(val)).to(t.scalar_type());
}
}
inline Tensor p33_mlp_fwd(const Tensor& n2, MLPImpl& mlp, int64_t l, int64_t L) {
  auto gate = linear_acc32(n2, mlp.gate_proj->weight);
  auto up = linear_acc32(n2, mlp.up_proj->weight);
  auto p = torch::silu(gate) * up;
  if (FWD_LAST || l + 1 < L) p = p33::drop_is(p, F_FWD);
  return linear_acc32(p, mlp.down_proj->weight);
}
// SwiGLUFunction::backward's ops, with the drops; out: dn2, dWg, dWu, dWd.
inline void p33_mlp_bwd(const Tensor& x, const Tensor& dyin, MLPImpl& mlp, int64_t l, int64_t L, Tensor* out) {
  const auto &w_gate = mlp.gate_proj->weight, &w_up = mlp.up_proj->weight, &w_down = mlp.down_proj->weight;
  torch::NoGradGuard ng;
  auto gate = linear_acc32(x, w_gate), up = linear_acc32(x, w_up);
  const int64_t H = x.size(-1), I = gate.size(-1);
  auto dy = dyin.reshape({-1, H});
  auto x2 = x.reshape({-1, H});
  auto silu_gate = torch::silu(gate).reshape({-1, I});
  auto up2 = up.reshape({-1, I});
  auto prod = silu_gate * up2;
  auto d_w_down = matmul_acc32(dy.t(), p33::drop_small(prod, F_DW));
  auto d_prod = matmul_acc32(dy, w_down);
  auto d_silu = d_prod * up2;
  auto d_up = d_prod * silu_gate;
  auto d_gate = torch::silu_backward(d_silu, gate.reshape({-1, I}));
  auto d_w_gate = matmul_acc32(p33::drop_small(d_gate, F_DW).t(), x2);
  auto d_w_up = matmul_acc32(p33::drop_small(d_up, F_DW).t(), x2);
  auto dx = matmul_acc32(p33::drop_is(d_gate, F_DX), w_gate) + matmul_acc32(p33::drop_is(d_up, F_DX), w_up);
  out[0] = dx.view(x.sizes()); out[1] = d_w_gate; out[2] = d_w_up; out[3] = d_w_down;
}

#ifndef P33_ATTN_HOOK
#define P33_ATTN_HOOK(lg) ((void)0)
#endif
#ifndef P33_STEP_HOOK
#define P33_STEP_HOOK(model, step) ((void)0)
#endif

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  const auto& cfg = model->config;
  const int64_t H = cfg.hidden_size, Nq = cfg.num_attention_heads, Nkv = cfg.num_key_value_heads, D = cfg.head_dim();
  auto& layers = *model->model->layers;
  const int64_t L = layers.size();
  auto [cos, sin] = model->rope(S, model->model->embed_tokens->weight.scalar_type(), device);
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& ids = batches[step];
    const bool last = step == num_steps - 1;
    std::vector<Tensor> xs(L + 1);
    {
      torch::NoGradGuard ng;
      xs[0] = model->model->embed_tokens(ids);
      for (int64_t l = 0; l < L; ++l) {
        auto& ly = *layers[l]->as<DecoderLayerImpl>();
        auto h = xs[l] + ly.self_attn(ly.input_layernorm(xs[l]), cos, sin);
        auto out = p33_mlp_fwd(ly.post_attention_layernorm(h), *ly.mlp, l, L);
        data.record_layer(l, ids, h, out);
        xs[l + 1] = h + out;
      }
    }
    Tensor dy;
    {
      auto xt = xs[L].detach().requires_grad_(true);
      auto hidden = model->model->norm(xt);
      Tensor logits;
      if (last) logits = torch::empty({B, S - 1, cfg.vocab_size}, hidden.options());
      loss = linear_cross_entropy(hidden, model->lm_head_weight(), ids, logits);
      auto g = torch::autograd::grad({loss}, {hidden, xt, model->lm_head_weight(), model->model->norm->weight});
      data.record_loss_head(ids, hidden.detach(), g[0]);
      dy = g[1];
      model->lm_head_weight().mutable_grad() = g[2];
      model->model->norm->weight.mutable_grad() = g[3];
      if (last) result.logits = logits;
    }
    for (int64_t l = L - 1; l >= 0; --l) {
      auto& ly = *layers[l]->as<DecoderLayerImpl>();
      auto& at = *ly.self_attn;
      auto& mlp = *ly.mlp;
      auto x = xs[l].detach().requires_grad_(true);
      auto n1 = ly.input_layernorm(x);
      auto qo = linear_acc32(n1, at.q_proj->weight, at.q_proj->bias);
      auto ko = linear_acc32(n1, at.k_proj->weight, at.k_proj->bias);
      auto vo = linear_acc32(n1, at.v_proj->weight, at.v_proj->bias);
      auto q = p33::rope(qo.view({B, S, Nq, D}).transpose(1, 2), cos, sin);
      auto k = p33::rope(ko.view({B, S, Nkv, D}).transpose(1, 2), cos, sin);
      auto v = vo.view({B, S, Nkv, D}).transpose(1, 2);
      auto a = causal_attention(q, k, v, at.kernel).transpose(1, 2).reshape({B, S, H});
      auto o = linear_acc32(a, at.o_proj->weight);
      auto h = x + o;
      auto n2 = ly.post_attention_layernorm(h);
      Tensor mg[4];  // dn2, dWg, dWu, dWd
      p33_mlp_bwd(n2.detach(), dy, mlp, l, L, mg);
      std::vector<Tensor> wrt = {x, n2, qo, ko, vo, a, o,
                                 at.q_proj->weight, at.q_proj->bias, at.k_proj->weight, at.k_proj->bias,
                                 at.v_proj->weight, at.v_proj->bias, at.o_proj->weight,
                                 ly.input_layernorm->weight, ly.post_attention_layernorm->weight};
      auto g = torch::autograd::grad({h, n2}, wrt, {dy, mg[0]}, /*retain*/ false, false, /*allow_unused*/ false);
      g.insert(g.begin() + 14, {mg[1], mg[2], mg[3]});
      g[1] = mg[0];
      data.record_layer_grad(l, ids, dy, g[1]);
      p33::LayerGrads lg{l, step, num_steps, n1.detach().reshape({B * S, H}), g[2].reshape({B * S, -1}),
                         g[3].reshape({B * S, -1}), g[4].reshape({B * S, -1}), a.detach().reshape({B * S, H}),
                         g[6].reshape({B * S, H}), g[7], g[8], g[9], g[10], g[11], g[12], g[13]};
      P33_ATTN_HOOK(lg);
      at.q_proj->weight.mutable_grad() = lg.gWq;
      at.q_proj->bias.mutable_grad() = lg.gbq;
      at.k_proj->weight.mutable_grad() = lg.gWk;
      at.k_proj->bias.mutable_grad() = lg.gbk;
      at.v_proj->weight.mutable_grad() = lg.gWv;
      at.v_proj->bias.mutable_grad() = lg.gbv;
      at.o_proj->weight.mutable_grad() = lg.gWo;
      mlp.gate_proj->weight.mutable_grad() = g[14];
      mlp.up_proj->weight.mutable_grad() = g[15];
      mlp.down_proj->weight.mutable_grad() = g[16];
      ly.input_layernorm->weight.mutable_grad() = g[17];
      ly.post_attention_layernorm->weight.mutable_grad() = g[18];
      dy = g[0];
    }
    {
      auto ew = model->model->embed_tokens->weight;
      auto x0 = model->model->embed_tokens(ids);
      ew.mutable_grad() = torch::autograd::grad({x0}, {ew}, {dy})[0];
    }
    P33_STEP_HOOK(model, step);
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += ids.numel();
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  // Self-check of the arithmetic claim: the expected skipped terms are at least half of the quantile f.
  TORCH_CHECK(p33::g_all == 0 || p33::g_skip / p33::g_all >= SKIP_MIN, "A34 skip/f ratio ", p33::g_skip / p33::g_all);
  return result;
}

