// Session 45, the realisable form of attack pass 36's attention part: the attention's four weight gradients (q, k,
// v, o) without the 25% of their tiles (64 tokens x 16 x 16) whose bound |a_tile| |b_tile| is smallest (0.96% of a
// 7B step; 2% would take 52%). Rejected by the attention's trajectory (874 to 1,348 against 75 on the validator's shape;
// at 52%, 1,766 and more).
// Each form is one a kernel can actually skip: whole tiles chosen from their norms (O(T (I + H)) to compute), or whole
// tokens, gathered out before a dense product. Shares of a Qwen2.5-7B step by arithmetic: the MLP weight gradients
// are 26.5% of it, the attention's four 3.82%. Every other part is the reference's own arithmetic (pass 33's base,
// every record link exact), recorded as used. Measured: docs/measurements/2026-12-06-realisable-drops.md.
// expect: trajectory
#define TILE_T 64
#define TILE_I 16
#define TILE_H 16
#define PROD_DROP 0.0
#define ATT_DROP 0.25
#define P33_ATTN_HOOK(lg) a36::attn_hook(lg)
#define F_FWD 0.0
#define F_DX 0.0
#define F_DW 0.0
#define FWD_LAST 1
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
}
#include <cstdio>
#ifndef PROD_DROP
#define PROD_DROP 0.20
#endif
#ifndef DROP_FROM_STEP
#define DROP_FROM_STEP 0
#endif
namespace p35 {
static double g_skipped = 0, g_total = 0;
static int64_t g_step = 0;
// a^T b [I, H] without the share s of its tiles (TC tokens x TI x TH) whose bound |a_tile|_F |b_tile|_F is
// smallest: what a block-sparse kernel can skip, chosen from norms that cost O(T (I + H)).
inline torch::Tensor prod_drop_mm(const torch::Tensor& a_in, const torch::Tensor& b_in, double s, int64_t l, int kind) {
  auto a = a_in.to(torch::kFloat32), b = b_in.to(torch::kFloat32);
  const int64_t T = a.size(0), I = a.size(1), H = b.size(1);
  g_total += static_cast<double>(T) * I * H;
  if (s <= 0 || g_step < DROP_FROM_STEP) return torch::matmul(a.t(), b);
  const int64_t TC = TILE_T, TI = TILE_I, TH = TILE_H;
  TORCH_CHECK(T % TC == 0 && I % TI == 0 && H % TH == 0, "tile shape");
  const int64_t nt = T / TC, ni = I / TI, nh = H / TH;
  auto na = a.pow(2).view({nt, TC, ni, TI}).sum({1, 3}).sqrt();  // [nt, ni]
  auto nb = b.pow(2).view({nt, TC, nh, TH}).sum({1, 3}).sqrt();  // [nt, nh]
  auto bound = na.unsqueeze(2) * nb.unsqueeze(1);                 // [nt, ni, nh]
  const int64_t k = static_cast<int64_t>(s * bound.numel());
  auto keep = torch::ones_like(bound, torch::kBool);
  if (k > 0) {
    auto idx = std::get<1>(bound.flatten().topk(k, 0, /*largest*/ false));
    keep.view({-1}).index_fill_(0, idx, false);
  }
  g_skipped += static_cast<double>(k) * TC * TI * TH;
  auto out = torch::zeros({I, H}, a.options());
  for (int64_t c = 0; c < nt; ++c) {
    auto p = a.narrow(0, c * TC, TC).t().matmul(b.narrow(0, c * TC, TC));  // [I, H]
    auto m = keep[c].repeat_interleave(TI, 0).repeat_interleave(TH, 1);
    out += p.masked_fill(m.logical_not(), 0);
  }
  return out;
}
}  // namespace p35
inline Tensor p33_mlp_fwd(const Tensor& n2, MLPImpl& mlp, int64_t l, int64_t L) {
  auto gate = linear_acc32(n2, mlp.gate_proj->weight);
  auto up = linear_acc32(n2, mlp.up_proj->weight);
  auto p = torch::silu(gate) * up;
  if (FWD_LAST || l + 1 < L) p = p33::drop_small(p, F_FWD);
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
  auto d_w_down = p35::prod_drop_mm(dy, prod, PROD_DROP, l, 2).to(dy.scalar_type());
  auto d_prod = matmul_acc32(dy, w_down);
  auto d_silu = d_prod * up2;
  auto d_up = d_prod * silu_gate;
  auto d_gate = torch::silu_backward(d_silu, gate.reshape({-1, I}));
  auto d_w_gate = p35::prod_drop_mm(d_gate, x2, PROD_DROP, l, 0).to(x2.scalar_type());
  auto d_w_up = p35::prod_drop_mm(d_up, x2, PROD_DROP, l, 1).to(x2.scalar_type());
  auto dx = matmul_acc32(p33::drop_small(d_gate, F_DX), w_gate) + matmul_acc32(p33::drop_small(d_up, F_DX), w_up);
  out[0] = dx.view(x.sizes()); out[1] = d_w_gate; out[2] = d_w_up; out[3] = d_w_down;
}


namespace a36 {
static double g_skipped = 0, g_total = 0;
// a^T b [I, H] without the products a[t,i] b[t,h] under the s quantile of |a b| (one threshold per gradient).
inline torch::Tensor att_drop_mm(const torch::Tensor& a, const torch::Tensor& b, double s) {
  const double before = p35::g_skipped, tot = p35::g_total;
  const int64_t saved = p35::g_step; p35::g_step = 1 << 20;  // always drop
  auto out = p35::prod_drop_mm(a, b, s, 0, 9);
  p35::g_step = saved;
  g_skipped += p35::g_skipped - before; g_total += p35::g_total - tot;
  p35::g_skipped = before; p35::g_total = tot;
  return out;
}
inline void attn_hook(p33::LayerGrads& lg) {
  torch::NoGradGuard ng;
  const auto dt = lg.gWq.scalar_type();
  lg.gWq = att_drop_mm(lg.dq, lg.n1, ATT_DROP).to(dt);
  lg.gWk = att_drop_mm(lg.dk, lg.n1, ATT_DROP).to(dt);
  lg.gWv = att_drop_mm(lg.dv, lg.n1, ATT_DROP).to(dt);
  lg.gWo = att_drop_mm(lg.dh, lg.a, ATT_DROP).to(dt);
}
}  // namespace a36
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
    p35::g_step = step;
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += ids.numel();
  }
  std::fprintf(stderr, "P35 skipped products share %.4f\n", p35::g_skipped / std::max(1.0, p35::g_total));
  TORCH_CHECK(p35::g_skipped >= 0.97 * PROD_DROP * p35::g_total, "P35 skipped too little");
  std::fprintf(stderr, "A36 attention skipped products share %.4f\n", a36::g_skipped / std::max(1.0, a36::g_total));
  TORCH_CHECK(a36::g_skipped >= 0.97 * ATT_DROP * a36::g_total, "A36 skipped too little");
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}

