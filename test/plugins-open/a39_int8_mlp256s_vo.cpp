// Attack pass 39 (2026-12-06, session 45; fresh context, CPU; docs/attack-passes.md, 39): an OPEN gap, not run by the suite (README, Verification, known gaps).
// 256 sorted tokens of the MLP's weight gradients (1.66%) and the attention's v and o weight gradients (0.955%) from
// block-scaled INT8 operands: 2.61% of a 7B step by arithmetic. ACCEPTED 4 of 4 runs (`bin/tournament local-bench
// <this> --runs 2 --seed 39500 --json`: attention_record_trajectory_excess 1.18 and 2.59 against 2.7; `calibrate
// --seed 39200 --seed-count 2`: 2.06, 2.25).
// INT8 operands are outside the contract (bf16 or wider); no reading separates an error this size from honest rounding yet. The pass's own notes follow.
#define MLP_F8_TOK 256
#define TOK_SORT 1
#define ATT_DW 12
// Attack pass 39: block-scaled INT8 operands (symmetric, a float scale per block of BLK along the reduction dim,
// amax -> 127, round to nearest; int32/fp32 accumulation): an H100's INT8 tensor cores run at twice BF16's rate
// (1979 vs 989 dense TOPS), so each such product costs half. Narrower than bf16: outside the contract (a cheat).
// ATT_DW: mask of the attention weight gradients (q 1, k 2, v 4, o 8) in INT8; ATT_STEPS: mask of timed steps
// (bit s = step s+1) where they are; MLP_I8_TOK: tokens of every batch whose MLP weight gradients are INT8;
// MLP_STEPS: step mask for that. Everything else is the reference's arithmetic, layer by layer.
#ifndef ATT_STEPS
#define ATT_STEPS 31
#endif
#ifndef MLP_STEPS
#define MLP_STEPS 31
#endif
#ifndef BLK
#define BLK 128
#endif
#ifndef QMAX
#define QMAX 127.0
#endif
static int g_step = 0;
// Attack pass 38: the attention's projections (q, k, v, o) with their backward products in FP8 (e4m3, 3 mantissa
// bits, power-of-two scale per row of 128), fp32 accumulation: on an H100 an FP8 GEMM runs at twice BF16's rate.
// ATT_DW: the four weight gradients from fp8 operands; ATT_DX: the four input gradients from fp8 operands;
// ATT_FWD: the four forward products from fp8 operands (then also in the recorded forward).
// Everything else is the reference's arithmetic, layer by layer (pass 33's base), every record from what was used.
#include <tournament/train_api.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
using namespace tournament;
using torch::Tensor;
// masks over the projections: q 1, k 2, v 4, o 8
#ifndef ATT_DW
#define ATT_DW 0
#endif
#ifndef ATT_DX
#define ATT_DX 0
#endif
#ifndef ATT_FWD
#define ATT_FWD 0
#endif
#ifndef MBITS
#define MBITS 3
#endif
#ifndef MLP_DW8
#define MLP_DW8 0.0
#endif

namespace f8 {
// x rounded to e4m3 (MBITS mantissa bits, exponent floor -6, max 448) after a power-of-two scale per block of 128
// along the last dim (amax -> at most 448); returned in float32 at x's scale.
inline Tensor q8(const Tensor& xin) {
  auto x = xin.to(torch::kFloat32).contiguous();
  const int64_t F = x.size(-1);
  const int64_t blk = F % BLK == 0 ? BLK : F;
  auto shp = x.sizes().vec();
  auto xb = x.view({-1, F / blk, blk});
  auto amax = xb.abs().amax(-1, true).clamp_min(1e-30);
  auto sc = QMAX / amax;
  auto r = torch::round(xb * sc).clamp(-QMAX, QMAX);
  return (r / sc).view(shp);
}
inline Tensor mm8(const Tensor& a, const Tensor& b) {  // fp8 operands, fp32 accumulation
  return torch::matmul(q8(a), q8(b.t().contiguous()).t());
}
static bool g_fwd8 = false;

struct Fp8Linear : public torch::autograd::Function<Fp8Linear> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor x, Tensor w, Tensor b, bool has_b, int64_t id) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["id"] = id;
    ctx->saved_data["has_b"] = has_b;
    return fwd(x, w, b, has_b, id);
  }
  static Tensor fwd(const Tensor& x, const Tensor& w, const Tensor& b, bool has_b, int64_t id) {
    if ((ATT_FWD & id) && g_fwd8) {
      auto shp = x.sizes().vec();
      shp.back() = w.size(0);
      auto y = torch::matmul(q8(x.reshape({-1, x.size(-1)})), q8(w).t());
      if (has_b) y = y + b.to(torch::kFloat32);
      return y.to(x.scalar_type()).view(shp);
    }
    return has_b ? linear_acc32(x, w, b) : linear_acc32(x, w);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list go) {
    auto sv = ctx->get_saved_variables();
    auto x = sv[0], w = sv[1];
    auto dy = go[0];
    const int64_t I = x.size(-1), O = w.size(0);
    auto dy2 = dy.reshape({-1, O}), x2 = x.reshape({-1, I});
    Tensor dx, dw;
    const int64_t id = ctx->saved_data["id"].toInt();
    if (ATT_DX & id) dx = torch::matmul(q8(dy2), q8(w)).to(x.scalar_type());  // [T,O]x[O,I]
    else dx = matmul_acc32(dy2, w);
    if ((ATT_DW & id) && ((ATT_STEPS >> g_step) & 1)) dw = torch::matmul(q8(dy2.t().contiguous()), q8(x2.t().contiguous()).t()).to(w.scalar_type());
    else dw = matmul_acc32(dy2.t(), x2);
    auto db = dy2.sum(0).to(w.scalar_type());
    return {dx.view(x.sizes()), dw, ctx->saved_data["has_b"].toBool() ? db : Tensor(), Tensor(), Tensor()};
  }
};
}  // namespace f8


#ifndef MLP_F8_TOK
#define MLP_F8_TOK 0
#endif
// dW = a^T b over tokens: the first MLP_F8_TOK tokens from fp8 operands, the rest from the bf16 operands, fp32
// accumulation, rounded once (a split-K GEMM whose first K-chunk runs on the FP8 tensor cores).
inline Tensor dw_split(const Tensor& a, const Tensor& b) {
  const int64_t T = a.size(0), c = ((MLP_STEPS >> g_step) & 1) ? std::min<int64_t>(MLP_F8_TOK, T) : 0;
  if (c <= 0) return matmul_acc32(a.t(), b);
#ifdef TOK_SORT
  {  // the tokens whose contribution is smallest (|a_t| |b_t|, a cheap O(T d) pass) gathered first: a kernel gathers
     // them into the INT8 chunk of a split-K product
    auto key = a.to(torch::kFloat32).norm(2, {1}) * b.to(torch::kFloat32).norm(2, {1});
    auto idx = std::get<1>(key.sort());
    auto as = a.index_select(0, idx), bs = b.index_select(0, idx);
    auto rest = torch::matmul(as.narrow(0, c, T - c).t().to(torch::kFloat32), bs.narrow(0, c, T - c).to(torch::kFloat32));
    auto head = torch::matmul(f8::q8(as.narrow(0, 0, c).t().contiguous()), f8::q8(bs.narrow(0, 0, c).t().contiguous()).t());
    return (rest + head).to(a.scalar_type());
  }
#endif
  auto rest = torch::matmul(a.narrow(0, c, T - c).t().to(torch::kFloat32), b.narrow(0, c, T - c).to(torch::kFloat32));
  auto head = torch::matmul(f8::q8(a.narrow(0, 0, c).t().contiguous()), f8::q8(b.narrow(0, 0, c).t().contiguous()).t());
  return (rest + head).to(a.scalar_type());
}
inline void mlp_bwd(const Tensor& x, const Tensor& dyin, MLPImpl& mlp, Tensor* out) {
  const auto &w_gate = mlp.gate_proj->weight, &w_up = mlp.up_proj->weight, &w_down = mlp.down_proj->weight;
  torch::NoGradGuard ng;
  auto gate = linear_acc32(x, w_gate), up = linear_acc32(x, w_up);
  const int64_t H = x.size(-1), I = gate.size(-1);
  auto dy = dyin.reshape({-1, H});
  auto x2 = x.reshape({-1, H});
  auto silu_gate = torch::silu(gate).reshape({-1, I});
  auto up2 = up.reshape({-1, I});
  auto prod = silu_gate * up2;
  auto d_w_down = dw_split(dy, prod);
  auto d_prod = matmul_acc32(dy, w_down);
  auto d_silu = d_prod * up2;
  auto d_up = d_prod * silu_gate;
  auto d_gate = torch::silu_backward(d_silu, gate.reshape({-1, I}));
  auto d_w_gate = dw_split(d_gate, x2);
  auto d_w_up = dw_split(d_up, x2);
  auto dx = matmul_acc32(d_gate, w_gate) + matmul_acc32(d_up, w_up);
  out[0] = dx.view(x.sizes()); out[1] = d_w_gate; out[2] = d_w_up; out[3] = d_w_down;
}
inline Tensor lin(const Tensor& x, const Tensor& w, const Tensor& b, int64_t id) {
  const bool hb = b.defined();
  auto bb = hb ? b : torch::zeros({w.size(0)}, w.options());
  if (!torch::GradMode::is_enabled()) return f8::Fp8Linear::fwd(x, w, bb, hb, id);
  return f8::Fp8Linear::apply(x, w, bb, hb, id);
}
inline Tensor rotate_half(const Tensor& x) { auto h = x.chunk(2, -1); return torch::cat({-h[1], h[0]}, -1); }
inline Tensor rope(const Tensor& x, const Tensor& c, const Tensor& s) { return x * c + rotate_half(x) * s; }

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  f8::g_fwd8 = true;
  std::vector<Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  const auto& cfg = model->config;
  const int64_t H = cfg.hidden_size, Nq = cfg.num_attention_heads, Nkv = cfg.num_key_value_heads, D = cfg.head_dim();
  auto& layers = *model->model->layers;
  const int64_t L = layers.size();
  auto cs_ = model->rope(S, model->model->embed_tokens->weight.scalar_type(), device);
  Tensor cos = std::get<0>(cs_), sin = std::get<1>(cs_);
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  Tensor loss;
  auto attn = [&](AttentionImpl& at, const Tensor& n1, Tensor* qo, Tensor* ko, Tensor* vo, Tensor* a) {
    *qo = lin(n1, at.q_proj->weight, at.q_proj->bias, 1);
    *ko = lin(n1, at.k_proj->weight, at.k_proj->bias, 2);
    *vo = lin(n1, at.v_proj->weight, at.v_proj->bias, 4);
    auto q = rope(qo->view({B, S, Nq, D}).transpose(1, 2), cos, sin);
    auto k = rope(ko->view({B, S, Nkv, D}).transpose(1, 2), cos, sin);
    auto v = vo->view({B, S, Nkv, D}).transpose(1, 2);
    *a = causal_attention(q, k, v, at.kernel).transpose(1, 2).reshape({B, S, H});
    return lin(*a, at.o_proj->weight, Tensor(), 8);
  };
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& ids = batches[step];
    g_step = (int)step;
    const bool last = step == num_steps - 1;
    std::vector<Tensor> xs(L + 1);
    {
      torch::NoGradGuard ng;
      xs[0] = model->model->embed_tokens(ids);
      for (int64_t l = 0; l < L; ++l) {
        auto& ly = *layers[l]->as<DecoderLayerImpl>();
        Tensor qo, ko, vo, a;
        auto h = xs[l] + attn(*ly.self_attn, ly.input_layernorm(xs[l]), &qo, &ko, &vo, &a);
        auto out = ly.mlp->forward(ly.post_attention_layernorm(h));
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
      Tensor qo, ko, vo, a;
      auto o = attn(at, n1, &qo, &ko, &vo, &a);
      auto h = x + o;
      auto n2 = ly.post_attention_layernorm(h);
      Tensor mg[4];
#if MLP_F8_TOK
      mlp_bwd(n2.detach(), dy, mlp, mg);
#else
      {
        auto n2d = n2.detach().requires_grad_(true);
        auto mo = mlp.forward(n2d);
        auto mgv = torch::autograd::grad({mo}, {n2d, mlp.gate_proj->weight, mlp.up_proj->weight, mlp.down_proj->weight},
                                         {dy});
        for (int i = 0; i < 4; ++i) mg[i] = mgv[i];
      }
#endif
      data.record_layer_grad(l, ids, dy, mg[0]);
      std::vector<Tensor> wrt = {x,
                                 at.q_proj->weight, at.q_proj->bias, at.k_proj->weight, at.k_proj->bias,
                                 at.v_proj->weight, at.v_proj->bias, at.o_proj->weight,
                                 ly.input_layernorm->weight, ly.post_attention_layernorm->weight};
      auto g = torch::autograd::grad({h, n2}, wrt, {dy, mg[0]});
      at.q_proj->weight.mutable_grad() = g[1];
      at.q_proj->bias.mutable_grad() = g[2];
      at.k_proj->weight.mutable_grad() = g[3];
      at.k_proj->bias.mutable_grad() = g[4];
      at.v_proj->weight.mutable_grad() = g[5];
      at.v_proj->bias.mutable_grad() = g[6];
      at.o_proj->weight.mutable_grad() = g[7];
      ly.input_layernorm->weight.mutable_grad() = g[8];
      ly.post_attention_layernorm->weight.mutable_grad() = g[9];
      mlp.gate_proj->weight.mutable_grad() = mg[1];
      mlp.up_proj->weight.mutable_grad() = mg[2];
      mlp.down_proj->weight.mutable_grad() = mg[3];
      dy = g[0];
    }
    {
      auto ew = model->model->embed_tokens->weight;
      auto x0 = model->model->embed_tokens(ids);
      ew.mutable_grad() = torch::autograd::grad({x0}, {ew}, {dy})[0];
    }
    data.wait_recorded();
    opt.step();
    data.step_done();
    opt.zero_grad();
    result.total_tokens += ids.numel();
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
