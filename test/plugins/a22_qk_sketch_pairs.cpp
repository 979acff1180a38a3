// Attack pass 22 (session 37, fresh context, CPU): q_proj's and k_proj's weight gradients count-sketched
// over the positions in the last SKETCH_LAST steps (default 2), into
// M = N / RATIO buckets with random signs, each bucket holding whole pairs of rows (row r and row r ^ 2
// of every block of four, at the same place in the sequence: the pairs the layer-position check reads
// as mismatched, so the sketch's cross terms land where that check expects honest spread). AdamW's
// second moment for them is fed g^2 less the sketch's estimated variance (at least VFLOOR g^2), and the
// step is kept within AdamW's reach. The input gradients and every other tensor are exact, so the
// trajectory's lm_head and MLP readings are 0. No pair-energy limit reads q and k, and on the tiny model most
// of their weights cannot move at lr 1e-4 (their start is scaled by 5.29: about 77% have |w| >= 2^-5,
// where an AdamW step is under half a bf16 spacing), so their gradients barely reach the loss.
// Share: 0.74% of the tiny run, about 0.58% of a Qwen2.5-7B run (q/k weight gradients are 2.48% and
// 1.93% of a step).
// Before session 37 the trajectory did not judge the attention's kinds: ACCEPTED, 10 of 10 runs
// (`bin/tournament local-bench <this file> --runs 2 --seed S`, S = 22100 to 22500, HEAD e55f9ee; closest:
// q_proj's update error 0.313 against 0.38, layer positions 0.62), and stacked on
// test/plugins-open/a12_head_dx_lintail.cpp (4.6% of the tiny run, about 1.3% of a 7B run) 6 of 6.
// Now attention_trajectory_excess rejects it: q and k read 765 to 5,037 against the limit 75 (the tuned
// example 16.9 on seed 22100). Record: docs/measurements/2026-12-05-attack22.md.
// expect: trajectory
#include <tournament/train_api.h>
#include <cmath>
#include <map>
#include <string>
using namespace tournament;

#ifndef SKETCH_LAST
#define SKETCH_LAST 2
#endif
#ifndef VFLOOR
#define VFLOOR 0.7  // the corrected g^2 kept at least VFLOOR g^2
#endif
#ifndef RATIO
#define RATIO 8
#endif

namespace {
bool g_sketch = false;
std::map<const void*, torch::Tensor> g_var;  // weight -> the sketch error's estimated variance per element (float32)
uint64_t g_seed = 0x1234567;

struct SketchLinear : public torch::autograd::Function<SketchLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor w, torch::Tensor b) {
    ctx->save_for_backward({x, w});
    return torch::nn::functional::linear(x, w, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list go) {
    auto saved = ctx->get_saved_variables();
    auto x = saved[0], w = saved[1];
    auto dy = go[0];
    auto dx = dy.matmul(w);
    auto x2 = x.reshape({-1, x.size(-1)}), dy2 = dy.reshape({-1, dy.size(-1)});
    const int64_t N = x2.size(0), M = std::max<int64_t>(1, N / RATIO);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(g_seed++);
    // Each bucket holds whole pairs of positions: row r and row r ^ 2 of every block of four rows, at the
    // same place in the sequence (x is [B, S, H], flattened row-major), so the sketch's cross terms
    // include each position's partner in those pairs.
    const int64_t S = x.size(-2);
    auto n = torch::arange(N, torch::kLong);
    auto row = n.div(S, "floor"), col = n.remainder(S);
    auto pair = (row.div(4, "floor") * 2 + row.remainder(2)) * S + col;  // [N]: the pair's index
    const int64_t P = N / 2;
    auto pb = torch::randperm(P, gen, torch::kLong).remainder(M);         // each pair's bucket
    auto bucket = pb.index_select(0, pair);
    auto sign = (torch::randint(0, 2, {N}, gen, torch::kLong) * 2 - 1).to(torch::kFloat32);
    auto sx = torch::zeros({M, x2.size(1)}, torch::kFloat32).index_add_(0, bucket, x2.to(torch::kFloat32) * sign.unsqueeze(1));
    auto sd = torch::zeros({M, dy2.size(1)}, torch::kFloat32).index_add_(0, bucket, dy2.to(torch::kFloat32) * sign.unsqueeze(1));
    auto dw = sd.t().mm(sx).to(w.scalar_type());
    {
      // E[(dw - g)^2] per element: sum over buckets of (sum dy^2)(sum x^2) less the own terms, which
      // are about 1 / (N / M) of it; the pair partners' cross terms are left in (they are error too).
      auto qd = torch::zeros({M, dy2.size(1)}, torch::kFloat32).index_add_(0, bucket, dy2.to(torch::kFloat32).square());
      auto qx = torch::zeros({M, x2.size(1)}, torch::kFloat32).index_add_(0, bucket, x2.to(torch::kFloat32).square());
      g_var[w.data_ptr()] = qd.t().mm(qx) * (1.0 - double(M) / double(N));
    }
    auto db = dy2.to(torch::kFloat32).sum(0).to(w.scalar_type());
    return {dx, dw, db};
  }
};

torch::Tensor proj(LinearImpl& l, const torch::Tensor& x) {
  if (!g_sketch) return l.forward(x);
  return SketchLinear::apply(x, l.weight, l.bias);
}
torch::Tensor rotate_half(const torch::Tensor& x) {
  auto h = x.chunk(2, -1);
  return torch::cat({-h[1], h[0]}, -1);
}
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& s) { return x * c + rotate_half(x) * s; }
torch::Tensor attention(AttentionImpl& a, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t B = x.size(0), S = x.size(1);
  auto q = proj(*a.q_proj, x).view({B, S, a.n_heads, a.head_dim}).transpose(1, 2);
  auto k = proj(*a.k_proj, x).view({B, S, a.n_kv_heads, a.head_dim}).transpose(1, 2);
  auto v = a.v_proj(x).view({B, S, a.n_kv_heads, a.head_dim}).transpose(1, 2);
  q = rope(q, cos, sin);
  k = rope(k, cos, sin);
  auto out = causal_attention(q, k, v, a.kernel);
  out = out.transpose(1, 2).reshape({B, S, a.n_heads * a.head_dim});
  return a.o_proj(out);
}
torch::Tensor hidden(Qwen2ForCausalLM& model, const torch::Tensor& ids) {
  auto x = model->model->embed_tokens(ids);
  auto [cos, sin] = model->rope(ids.size(1), x.scalar_type(), x.device());
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    auto* l = model->model->layers[i]->as<DecoderLayerImpl>();
    auto h = x + attention(*l->self_attn, l->input_layernorm(x), cos, sin);
    x = h + l->mlp(l->post_attention_layernorm(h));
  }
  return model->model->norm(x);
}
}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]));
  const int64_t B = data.batch_size(), S = data.seq_len();
  std::vector<torch::Tensor> params = model->parameters(), m, v;
  for (auto& p : params) { m.push_back(torch::zeros_like(p)); v.push_back(torch::zeros_like(p)); }
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    g_sketch = step >= num_steps - SKETCH_LAST;
    g_var.clear();
    const auto& batch = batches[step];
    auto h = hidden(model, batch);
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, h.options());
    loss = linear_cross_entropy(h, model->lm_head_weight(), batch, logits);
    loss.backward();
    data.wait_recorded();
    {
      torch::NoGradGuard ng;
      const auto& o = optimizer;
      for (size_t i = 0; i < params.size(); ++i) {
        auto& p = params[i];
        if (!p.grad().defined()) continue;
        auto it = g_var.find(p.data_ptr());
        if (it == g_var.end()) { adamw_unfused_step_(p, p.grad(), m[i], v[i], step + 1, o); continue; }
        // AdamW with the second moment fed g^2 less the sketch's own variance (kept at least a quarter of g^2)
        const double bc1 = 1.0 - std::pow(o.beta1, double(step + 1)), bc2s = std::sqrt(1.0 - std::pow(o.beta2, double(step + 1)));
        auto pf = p.to(torch::kFloat32), gf = p.grad().to(torch::kFloat32), mf = m[i].to(torch::kFloat32), vf = v[i].to(torch::kFloat32);
        auto g2 = torch::max(gf.square() - it->second, gf.square() * VFLOOR);
        pf.mul_(1.0 - o.lr * o.weight_decay);
        mf.mul_(o.beta1).add_(gf, 1.0 - o.beta1);
        vf.mul_(o.beta2).add_(g2, 1.0 - o.beta2);
        auto denom = vf.sqrt().div_(bc2s).add_(o.eps);
        pf.sub_((mf / bc1 / denom).clamp(-0.98, 0.98) * o.lr);  // within AdamW's reach
        p.copy_(pf); m[i].copy_(mf); v[i].copy_(vf);
      }
    }
    data.step_done();
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits;
  }
  result.final_loss = loss.item<double>();
  return result;
}
