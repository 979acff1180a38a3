// Attack pass 8: in the LAST timed step only, the MLP's three weight-gradient
// products (gate, up, down, both layers: 12.9% of a step's matrix-product
// FLOPs on the tiny CPU model) are computed from a random 1/5 of the step's
// 2048 token positions (Bernoulli per position, weighted by 5), so 80% of
// those products are skipped: 0.8 x 12.9% / 5 steps = 2.07% of the run's
// matrix products. Every other gradient is exact (the MLP's input gradient
// too, so every layer below and lm_head are exact; the returned logits are the
// reference's). Positions rather than rows: each cell of every row keeps ~1/5
// of its positions, so the cell check sees no untrained cell.
// What the noisy estimate costs the last batch's loss (batch_loss ~0.003
// against 0.0015 allowed) is bought back by a cheap cover: after AdamW, the
// attention and embedding weights with the largest exact last-step gradient
// per unit of bf16 step are moved by one bf16 ulp against that gradient until
// the predicted last-batch loss drop reaches COVER_R (0.003) or the change's
// L2 norm COVER_C (0.02): an O(parameters) sort, no matrix product. It spreads
// over two groups and two kinds' worth of budget, so no group shift and no
// kind error reaches its limit. lm_head is untouched (its checks stay at 0).
// Warmup (2 steps) stays exact.
// Status: ACCEPTED on the CPU default in 20 of 20 local-bench runs (2026-12-04,
// seeds 9100-9109, 9300-9303, 9400-9405) and by calibrate on seeds 8100-8102;
// rejected since by the layer position check (README, Verification: the eighth
// attack pass): its MLP weights differ from the reference's along the last
// batch's single positions' own gradients (CPU 2.5 to 4.4 against 1.0; H200,
// without the cover, which is CPU-only: about 17 against 4.0).
// expect: layer_positions
#include <tournament/train_api.h>
#include <random>
#include <algorithm>
#include <cmath>
using namespace tournament;
#ifndef STALE_MASK
#define STALE_MASK 0x0
#endif
#ifndef SUB_MASK
#define SUB_MASK 0x10
#endif
#ifndef BETA
#define BETA 1.0
#endif
#ifndef ATTN_SUB
#define ATTN_SUB 0
#endif
#ifndef COVER_R
#define COVER_R 0.003
#endif
#ifndef COVER_C
#define COVER_C 0.02
#endif
#ifndef COVER_SET
#define COVER_SET 6
#endif
#ifndef ALPHA
#define ALPHA 1.0
#endif
#ifndef SUB_KEEP_NUM
#define SUB_KEEP_NUM 1
#endif
#ifndef SUB_KEEP_DEN
#define SUB_KEEP_DEN 5
#endif
namespace {
bool g_skip_dw = false;
torch::Tensor g_rows;  // token indices kept for dW (undefined: all)
double g_scale = 1.0;
struct MySwiGLU : public torch::autograd::Function<MySwiGLU> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor w_gate,
                               torch::Tensor w_up, torch::Tensor w_down) {
    namespace F = torch::nn::functional;
    auto gate = F::linear(x, w_gate);
    auto up = F::linear(x, w_up);
    ctx->save_for_backward({x, w_gate, w_up, w_down, gate, up});
    return F::linear(torch::silu(gate) * up, w_down);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w_gate = saved[1], &w_up = saved[2], &w_down = saved[3], &gate = saved[4], &up = saved[5];
    const int64_t H = x.size(-1), I = gate.size(-1);
    auto dy = grad_out[0].reshape({-1, H});
    auto x2 = x.reshape({-1, H});
    auto silu_gate = torch::silu(gate).reshape({-1, I});
    auto up2 = up.reshape({-1, I});
    torch::Tensor d_w_down, d_w_gate, d_w_up;
    const bool sub = g_rows.defined();
    if (!g_skip_dw) {
      if (sub) d_w_down = (dy.index_select(0, g_rows).t().mm((silu_gate * up2).index_select(0, g_rows)) * g_scale).to(dy.scalar_type());
      else d_w_down = dy.t().mm(silu_gate * up2);
    }
    auto d_prod = dy.mm(w_down);
    auto d_silu = d_prod * up2;
    auto d_up = d_prod * silu_gate;
    auto d_gate = torch::silu_backward(d_silu, gate.reshape({-1, I}));
    if (!g_skip_dw) {
      if (sub) {
        auto xs = x2.index_select(0, g_rows);
        d_w_gate = (d_gate.index_select(0, g_rows).t().mm(xs) * g_scale).to(dy.scalar_type());
        d_w_up = (d_up.index_select(0, g_rows).t().mm(xs) * g_scale).to(dy.scalar_type());
      } else { d_w_gate = d_gate.t().mm(x2); d_w_up = d_up.t().mm(x2); }
    }
    auto dx = d_gate.mm(w_gate) + d_up.mm(w_up);
    return {dx.view(x.sizes()), d_w_gate, d_w_up, d_w_down};
  }
};
// y = x W^T + b with exact dx and bias gradient; the weight gradient from the
// sampled tokens g_rows only, scaled by g_scale (when g_rows is defined).
struct SubLinear : public torch::autograd::Function<SubLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor w, torch::Tensor b, bool has_b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["has_b"] = has_b;
    return has_b ? torch::nn::functional::linear(x, w, b) : torch::nn::functional::linear(x, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    const int64_t in = x.size(-1), out = w.size(0);
    auto dy = grad_out[0].reshape({-1, out});
    auto x2 = x.reshape({-1, in});
    auto dx = grad_out[0].matmul(w);
    torch::Tensor dw;
    if (g_rows.defined()) dw = (dy.index_select(0, g_rows).t().mm(x2.index_select(0, g_rows)) * g_scale).to(w.scalar_type());
    else dw = dy.t().mm(x2);
    torch::Tensor db;
    if (ctx->saved_data["has_b"].toBool()) db = dy.sum(0);
    else db = torch::Tensor();
    return {dx, dw, db, torch::Tensor()};
  }
};
torch::Tensor sublin(const torch::Tensor& x, const Linear& l) {
  const bool hb = l->bias.defined();
  return SubLinear::apply(x, l->weight, hb ? l->bias : l->weight, hb);
}
torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}
torch::Tensor my_attn(AttentionImpl* a, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t B = x.size(0), S = x.size(1);
  auto q = sublin(x, a->q_proj).view({B, S, a->n_heads, a->head_dim}).transpose(1, 2);
  auto k = sublin(x, a->k_proj).view({B, S, a->n_kv_heads, a->head_dim}).transpose(1, 2);
  auto v = sublin(x, a->v_proj).view({B, S, a->n_kv_heads, a->head_dim}).transpose(1, 2);
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  auto out = causal_attention(q, k, v, a->kernel);
  out = out.transpose(1, 2).reshape({B, S, a->n_heads * a->head_dim});
  return sublin(out, a->o_proj);
}
bool g_attn_sub = false;
torch::Tensor hidden(Qwen2ForCausalLM& model, const torch::Tensor& ids) {
  auto x = model->model->embed_tokens(ids);
  auto [cos, sin] = model->rope(ids.size(1), x.scalar_type(), x.device());
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    auto* l = model->model->layers[i]->as<DecoderLayerImpl>();
    auto h = x + ((g_attn_sub && g_rows.defined()) ? my_attn(l->self_attn.get(), l->input_layernorm(x), cos, sin) : l->self_attn(l->input_layernorm(x), cos, sin));
    auto* m = l->mlp.get();
    x = h + MySwiGLU::apply(l->post_attention_layernorm(h), m->gate_proj->weight, m->up_proj->weight, m->down_proj->weight);
  }
  return model->model->norm(x);
}
}  // namespace
TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) TORCH_CHECK(data.next(&batches[step]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  std::vector<torch::Tensor> mlp_w;
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    auto* m = model->model->layers[i]->as<DecoderLayerImpl>()->mlp.get();
    mlp_w.push_back(m->gate_proj->weight); mlp_w.push_back(m->up_proj->weight); mlp_w.push_back(m->down_proj->weight);
  }
  std::vector<torch::Tensor> prev(mlp_w.size());
  std::vector<torch::Tensor> norms;  // the cover's candidates: every tensor but the MLP's, lm_head and the final norm
  for (const auto& item : model->named_parameters()) {
    const auto& k = item.key();
    const bool is_norm = k.find("layernorm") != std::string::npos;
    const bool is_attn = k.find("self_attn") != std::string::npos && k.find("k_proj.bias") == std::string::npos;
    const bool is_emb = k.find("embed_tokens") != std::string::npos;
    if ((COVER_SET & 1) && is_norm) norms.push_back(item.value());
    if ((COVER_SET & 2) && is_attn) norms.push_back(item.value());
    if ((COVER_SET & 4) && is_emb) norms.push_back(item.value());
  }
  AdamW opt(model->parameters(), optimizer);
  auto lmw = model->lm_head_weight();
  TrainResult result;
  torch::Tensor loss;
  const bool full_run = num_steps >= 3;  // warmup (1 or 2 steps) stays exact
  const int64_t shift = 5 - num_steps;     // the masks name steps of a 5-step run: the last is bit 4
  g_attn_sub = ATTN_SUB;  // warmup (2 steps) stays exact
  std::mt19937_64 rng(batches[0].sum().item<int64_t>() * 7919 + 13);
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool last = step == num_steps - 1;
    g_skip_dw = full_run && step > 0 && ((STALE_MASK >> (step + shift)) & 1);
    g_rows = torch::Tensor();
    g_scale = 1.0;
    if (full_run && ((SUB_MASK >> (step + shift)) & 1)) {
      std::vector<int64_t> rows;
      for (int64_t t = 0; t < B * S; ++t) if ((int64_t)(rng() % SUB_KEEP_DEN) < SUB_KEEP_NUM) rows.push_back(t);
      g_rows = torch::tensor(rows, torch::kInt64).to(device);
      g_scale = double(B * S) / rows.size();
    }
    torch::Tensor logits;
    if (last) logits = torch::empty({B, S - 1, model->config.vocab_size}, torch::TensorOptions().dtype(lmw.scalar_type()).device(device));
    auto h = hidden(model, batch);
    loss = linear_cross_entropy(h, lmw, batch, logits);
    loss.backward();
    for (size_t i = 0; i < mlp_w.size(); ++i) {
      if (g_skip_dw) mlp_w[i].mutable_grad() = prev[i].clone();
      else prev[i] = mlp_w[i].grad().detach().clone();
    }
    std::vector<torch::Tensor> ngrad;
    if (last && full_run && COVER_R > 0) for (auto& n : norms) ngrad.push_back(n.grad().detach().to(torch::kFloat32).clone());
    if (g_rows.defined() && ALPHA != 1.0) { torch::NoGradGuard ng; for (auto& w : mlp_w) w.mutable_grad().mul_(ALPHA); }
    std::vector<torch::Tensor> before;
    const bool over = g_rows.defined() && BETA != 1.0;
    if (over) for (auto& w : mlp_w) before.push_back(w.detach().clone());
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    if (over) {
      torch::NoGradGuard ng;
      for (size_t i = 0; i < mlp_w.size(); ++i) { auto d = mlp_w[i].detach().to(torch::kFloat32) - before[i].to(torch::kFloat32); mlp_w[i].detach().copy_(before[i].to(torch::kFloat32) + d * BETA); }
    }
    if (!ngrad.empty()) {
      // The cover: nudge the norm weights with the largest loss gradient per unit change by one bf16 step against it.
      torch::NoGradGuard ng;
      struct C { double ratio, gain, cost; size_t t; int64_t e; int dir; };
      std::vector<C> cand;
      for (size_t t = 0; t < norms.size(); ++t) {
        auto w = norms[t].detach();
        auto bits = w.view(torch::kInt16).to(torch::kInt32);
        auto up = (bits + 1).to(torch::kInt16).view(torch::kBFloat16).to(torch::kFloat32);
        auto dn = (bits - 1).to(torch::kInt16).view(torch::kBFloat16).to(torch::kFloat32);
        auto wf = w.to(torch::kFloat32);
        auto g = ngrad[t];
        auto pg = g.data_ptr<float>(); auto pw = wf.data_ptr<float>(); auto pu = up.data_ptr<float>(); auto pd = dn.data_ptr<float>();
        for (int64_t e = 0; e < w.numel(); ++e) {
          if (pg[e] == 0 || pw[e] == 0) continue;
          const bool neg = pw[e] < 0;  // for a negative value, +1 on the bits moves down
          const float toward_up = neg ? pd[e] : pu[e], toward_dn = neg ? pu[e] : pd[e];
          double delta = pg[e] > 0 ? pw[e] - toward_dn : toward_up - pw[e];
          double gain = std::abs(pg[e]) * delta;
          int dir = pg[e] > 0 ? -1 : 1;
          if (neg) dir = -dir;
          cand.push_back({std::abs(pg[e]) / delta, gain, delta * delta, t, e, dir});
        }
      }
      std::sort(cand.begin(), cand.end(), [](const C& a, const C& b) { return a.ratio > b.ratio; });
      double gain = 0, cost = 0;
      for (const auto& c : cand) {
        if (gain >= COVER_R || cost + c.cost > COVER_C * COVER_C) break;
        auto w = norms[c.t].detach();
        auto b = w.view(torch::kInt16);
        auto p = b.data_ptr<int16_t>();
        p[c.e] = static_cast<int16_t>(p[c.e] + c.dir);
        gain += c.gain; cost += c.cost;
      }
    }
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (last) result.logits = logits;
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
