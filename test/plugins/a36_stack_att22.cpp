// Attack pass 36 (2026-12-06, session 44; fresh context, CPU; docs/attack-passes.md, 36): a36_prod085.cpp's MLP drop
// (8.5% of the products, 2.25% of a 7B step; still open, test/plugins-open/) plus the four attention weight gradients
// without their smallest 22% of products (0.84%): 3.09% in all, ACCEPTED 3 of 3 on CSPRNG seeds (`bin/tournament
// local-bench <this> --runs 3 --json`; attention trajectory 8.8 to 19.7 against 75). Rejected since session 45 by the
// attention's steps judged from the layers' record (attention_record_trajectory_excess 4.4 to 8.9 against 2.7;
// docs/measurements/2026-12-06-attention-record.md). The pass's own notes follow.
// expect: trajectory
// Attack pass 36 (CPU, against mlp_grad_small_term_excess at 0.75): pass 35's product-level drop of the three MLP
// weight gradients at PROD_DROP=0.085 (between the honest-spread 7.5% and the judge's lowest product part, 10%),
// plus the attention's four weight gradients (q, k, v, o) without the smallest ATT_DROP=0.22 of their products a[t,i] b[t,h]
// (one threshold per gradient), which no small-term reading looks at (only the attention trajectory, limit 75).
// Share of a Qwen2.5-7B step by arithmetic: MLP weight grads 26.5% x 0.085 + attention weight grads 3.82% x 0.22 = 3.09%.
// (7B: linear params 7.07e9 -> 42.42 GFLOP/token; causal attention core fwd+bwd 0.62 GFLOP/token; MLP dW 11.41, attention dW 1.644.)
// As in pass 35 the skipped multiply-adds are counted by arithmetic (the threshold test taken as free); no faster as written.
// Attack pass 35 (2026-12-06, session 43; fresh context, CPU; docs/attack-passes.md, 35): the three MLP weight
// gradients without the smallest 12% of their products a[t,i] b[t,h] (one threshold over the whole product: 3.18% of
// a 7B step by arithmetic; no faster as written). ACCEPTED in most runs against the operand parts' energy reading
// (0.83 to 2.78 against 1.25). Closed in session 44: mlp_grad_small_term_excess counts elements and its parts include
// the products under one threshold (10, 14 and 20%): this reads 0.83 to 0.97 against 0.75 (honest at most 0.369;
// docs/measurements/2026-12-06-small-products.md).
// (pass 35's file header, as the pass copied it; its expect line does not apply here)
// The pass's own notes follow.
// Pass 35 (CPU, 40 minutes, against mlp_grad_small_term_excess): the three MLP weight gradients with the
// smallest PROD_DROP share of their PRODUCTS a[t,i]*b[t,h] left out (a product-level threshold, not each position's
// smallest operand entries): PROD_DROP x 26.49% of a 7B step by arithmetic (0.20: 5.30%; no faster as written).
// Every other part is the reference's own arithmetic (pass 33's base, every record link exact), recorded as used.
#define PROD_DROP 0.085
#define ATT_DROP 0.22
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
// sum_t a[t,i] b[t,h] over the products with |a b| >= tau, tau the s quantile of |a b| (from a sample of 2^20
// products): a^T b [A, B] without its smallest products.
inline torch::Tensor prod_drop_mm(const torch::Tensor& a_in, const torch::Tensor& b_in, double s, int64_t l, int kind) {
  auto a = a_in.to(torch::kFloat32), b = b_in.to(torch::kFloat32);
  const int64_t T = a.size(0), I = a.size(1), H = b.size(1);
  g_total += static_cast<double>(T) * I * H;
  if (s <= 0 || g_step < DROP_FROM_STEP) return torch::matmul(a.t(), b);
  const int64_t n = 1 << 20;
  auto ti = torch::randint(T, {n}, torch::kLong), ii = torch::randint(I, {n}, torch::kLong),
       hi = torch::randint(H, {n}, torch::kLong);
  auto sample = (a.index({ti, ii}) * b.index({ti, hi})).abs();
  const double tau = std::get<0>(sample.kthvalue(static_cast<int64_t>(s * n))).item<double>();
  auto out = torch::zeros({I, H}, a.options());
  const int64_t C = 64;
  for (int64_t t0 = 0; t0 < T; t0 += C) {
    const int64_t c = std::min(C, T - t0);
    auto p = a.narrow(0, t0, c).unsqueeze(2) * b.narrow(0, t0, c).unsqueeze(1);  // [c, I, H]
    auto keep = p.abs() >= tau;
    g_skipped += static_cast<double>(p.numel()) - keep.sum().item<double>();
    out += p.masked_fill(keep.logical_not(), 0).sum(0);
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
inline torch::Tensor att_drop_mm(const torch::Tensor& a_in, const torch::Tensor& b_in, double s) {
  auto a = a_in.to(torch::kFloat32), b = b_in.to(torch::kFloat32);
  const int64_t T = a.size(0), I = a.size(1), H = b.size(1);
  g_total += static_cast<double>(T) * I * H;
  if (s <= 0) return torch::matmul(a.t(), b);
  const int64_t n = 1 << 20;
  auto ti = torch::randint(T, {n}, torch::kLong), ii = torch::randint(I, {n}, torch::kLong),
       hi = torch::randint(H, {n}, torch::kLong);
  auto sample = (a.index({ti, ii}) * b.index({ti, hi})).abs();
  const double tau = std::get<0>(sample.kthvalue(static_cast<int64_t>(s * n))).item<double>();
  auto out = torch::zeros({I, H}, a.options());
  const int64_t C = 64;
  for (int64_t t0 = 0; t0 < T; t0 += C) {
    const int64_t c = std::min(C, T - t0);
    auto p = a.narrow(0, t0, c).unsqueeze(2) * b.narrow(0, t0, c).unsqueeze(1);
    auto keep = p.abs() >= tau;
    g_skipped += static_cast<double>(p.numel()) - keep.sum().item<double>();
    out += p.masked_fill(keep.logical_not(), 0).sum(0);
  }
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

