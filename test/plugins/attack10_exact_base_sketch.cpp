// Attack pass 10, case E: cases B and C on the REFERENCE's own arithmetic
// (not the tuned example's): the engine's modules and loss, the engine's
// AdamW (its unfused CPU path, the same function), with (1) lm_head's weight
// gradient in the last LATE steps as a control variate plus a count sketch of
// the residual (case B) and (2) the MLP's three weight-gradient products
// count-sketched in the last SK_STEPS steps (an autograd function with the
// engine's SwiGLU ops), AdamW's second moment fed g^2 less the sketch's
// estimated variance, the embedding's step x (1 + COVER_EMB) there.
// Defaults: LATE 3, SKETCH_DEN 2 (head), SK_STEPS 1, SK_DEN 3 (MLP), VFIX 1,
// COVER_EMB 0.05, EXACT_FRAC 0 (EXACT_FRAC > 0: that share of a sketched
// weight's rows, those whose sketch variance is largest against AdamW's
// second moment, computed exactly).
// Work skipped: as test/plugins-open/a10_head_mlp_sketch.cpp: 4.56% of the tiny run's matrix
// products, 3.92% on Qwen2.5-7B.
// RESULTS (this 2-core CPU, tiny default, 2026-12-04):
//   `bin/tournament local-bench test/plugins-open/a10_exact_base_sketch.cpp --runs 2 --seed S --json` with S = 10000, 10004, 10006, 10020, 10040, 10050, 10060: ACCEPTED
//   14 of 14 runs (7 of 7 evaluations);
//   `bin/tournament calibrate --device cpu --seed-count 3 --seed 1000
//   --threads 1 --cases baseline,test/plugins-open/a10_exact_base_sketch.cpp,
//   test/plugins/a10_head_cv_sketch.cpp --json`: 3 of 3 pass: 17 of 17 runs. Closest:
//   update error 0.071-0.084 (0.73-0.86 of 0.097), group shift up to
//   0.00188 (0.90) on seed 1002. The reference's own arithmetic lowered the
//   update error only a little against the tuned-example base (0.071-0.081
//   against 0.078-0.093): the sketch's noise is most of it.
//   SK_DEN 4 (var/eb_sk4.cpp): accepted 3 of 4, REJECTED run 10005 by
//   group_loss (0.00214); SK_STEPS 2 + SK_DEN 2 (var/eb_s2_d2.cpp):
//   REJECTED 2 of 2 by update_error (0.122, 0.131); EXACT_FRAC 0.25 with
//   SK_DEN 8, 0.125 with SK_DEN 4 (var/eb_d8_x25.cpp, var/eb_d4_x125.cpp,
//   about 2/3 of the MLP products skipped, as SK_DEN 3): ACCEPTED 2 of 2
//   each, update error 0.073-0.080: no real gain.
// Since the MLP's own update limit (mlp_update_rel_error, CPU 0.075; the
// honest MLP kinds reach 0.037): `bin/tournament local-bench <this file>
// --runs 2 --seed 10000 --json` REJECTED both runs by update_error (MLP kind
// 0.103, 0.112); in the adversarial suite's shape (--steps 3 --warmup-steps 1
// --batch-size 4, seed 8200) 0.237 and 0.242, with batch_loss, group_loss and
// head_gradient besides. Not measured on the H200, where the MLP's limit is
// the general one (0.6); there it ran out of memory in the timed run (seed 900).
// expect: update_error|layer_positions
#include <tournament/train_api.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdint>
#include <random>
#include <vector>
using namespace tournament;
#ifndef LATE
#define LATE 3  // steps at the end whose lm_head dense gradient part is estimated
#endif
#ifndef SKETCH_DEN
#define SKETCH_DEN 2  // the residual is count-sketched into N / SKETCH_DEN buckets
#endif
#ifndef SK_DEN
#define SK_DEN 3  // MLP weight gradients of the sketched steps: N / SK_DEN buckets
#endif
#ifndef SK_STEPS
#define SK_STEPS 1  // how many of the last steps have their MLP weight gradients sketched
#endif
#ifndef VFIX
#define VFIX 1.0  // AdamW's second moment fed g^2 less the sketch's estimated variance
#endif
#ifndef COVER_EMB
#define COVER_EMB 0.05  // in the sketched steps, the embedding gets (1 + COVER_EMB) x its AdamW step
#endif
#ifndef EXACT_FRAC
#define EXACT_FRAC 0.0  // share of a sketched weight's rows computed exactly: those whose noise AdamW would amplify most
#endif
namespace {

// ---- the MLP with its weight gradients count-sketched (the engine's SwiGLUFunction otherwise)
struct MlpSketch {
  bool on = false;
  std::mt19937_64* rng = nullptr;
  std::map<const void*, torch::Tensor> var;  // a sketched gradient's estimated variance, by weight memory
  std::map<const void*, torch::Tensor> v;    // AdamW's second moment, by weight memory
} g_mlp;

torch::Tensor sk_tmm(const torch::Tensor& A, const torch::Tensor& B, const torch::Tensor& bucket,
                     const torch::Tensor& sign, int64_t k, const torch::Tensor& w) {
  auto Af = A.to(torch::kFloat32), Bf = B.to(torch::kFloat32);
  auto am = Af.mean(0, true), bm = Bf.mean(0, true);
  auto exact = am.t().mm(bm).mul_(static_cast<double>(A.size(0)));  // the mean-field part, exact
  Af = Af - am;
  Bf = Bf - bm;
  auto ca = Af.square().sum(0), cb = Bf.square().sum(0);
  auto As = torch::zeros({k, A.size(1)}, Af.options()).index_add_(0, bucket, Af.mul_(sign));
  auto Bs = torch::zeros({k, B.size(1)}, Bf.options()).index_add_(0, bucket, Bf.mul_(sign));
  auto r = As.t().mm(Bs);  // [m, k] x [k, n]: the centred part, count-sketched
  auto var = torch::outer(ca, cb).add_(r.square()).div_(static_cast<double>(k));
  r.add_(exact);
  const int64_t n_exact = static_cast<int64_t>(EXACT_FRAC * static_cast<double>(A.size(1)));
  auto vit = g_mlp.v.find(w.data_ptr());
  if (n_exact > 0 && vit != g_mlp.v.end()) {
    // Rows whose sketch noise is largest against AdamW's second moment: their gradient exactly.
    auto score = var.div(vit->second.to(torch::kFloat32).add(1e-20)).sum(1);  // [m]
    auto rows = std::get<1>(score.topk(n_exact));
    auto ex = A.index_select(1, rows).t().mm(B);  // [n_exact, T] x [T, n]
    r.index_copy_(0, rows, ex.to(torch::kFloat32));
    var.index_fill_(0, rows, 0.0);
  }
  g_mlp.var[w.data_ptr()] = var;
  return r.to(A.scalar_type());
}

struct SketchSwiGLU : public torch::autograd::Function<SketchSwiGLU> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor w_gate,
                               torch::Tensor w_up, torch::Tensor w_down) {
    namespace F = torch::nn::functional;
    auto gate = F::linear(x, w_gate);
    auto up = F::linear(x, w_up);
    ctx->save_for_backward({x, w_gate, w_up, w_down, gate, up});
    return F::linear(torch::silu(gate) * up, w_down);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w_gate = saved[1], &w_up = saved[2], &w_down = saved[3], &gate = saved[4],
               &up = saved[5];
    const int64_t H = x.size(-1), I = gate.size(-1);
    auto dy = grad_out[0].reshape({-1, H});
    auto x2 = x.reshape({-1, H});
    auto silu_gate = torch::silu(gate).reshape({-1, I});
    auto up2 = up.reshape({-1, I});
    auto prod = silu_gate * up2;
    auto d_prod = dy.mm(w_down);
    auto d_silu = d_prod * up2;
    auto d_up = d_prod * silu_gate;
    auto d_gate = torch::silu_backward(d_silu, gate.reshape({-1, I}));
    torch::Tensor d_w_down, d_w_gate, d_w_up;
    if (g_mlp.on) {
      const int64_t T = dy.size(0), k = std::max<int64_t>(1, T / SK_DEN);
      std::vector<int64_t> b(T);
      std::vector<float> sg(T);
      for (int64_t i = 0; i < T; ++i) {
        const uint64_t r = (*g_mlp.rng)();
        b[i] = static_cast<int64_t>(r % static_cast<uint64_t>(k));
        sg[i] = (r >> 63) ? 1.f : -1.f;
      }
      auto bucket = torch::tensor(b, torch::TensorOptions().dtype(torch::kLong)).to(dy.device());
      auto sign = torch::tensor(sg).to(dy.device()).unsqueeze(1);
      d_w_down = sk_tmm(dy, prod, bucket, sign, k, w_down);
      d_w_gate = sk_tmm(d_gate, x2, bucket, sign, k, w_gate);
      d_w_up = sk_tmm(d_up, x2, bucket, sign, k, w_up);
    } else {
      d_w_down = dy.t().mm(prod);
      d_w_gate = d_gate.t().mm(x2);
      d_w_up = d_up.t().mm(x2);
    }
    auto dx = d_gate.mm(w_gate) + d_up.mm(w_up);
    return {dx.view(x.sizes()), d_w_gate, d_w_up, d_w_down};
  }
};

// Qwen2ForCausalLM::hidden_states with the MLP above (the same ops: without the sketch, the reference's numbers).
torch::Tensor hidden_states(Qwen2ForCausalLM& model, const torch::Tensor& ids) {
  const int64_t S = ids.size(1);
  auto x = model->model->embed_tokens(ids);
  auto [cos, sin] = model->rope(S, x.scalar_type(), x.device());
  for (size_t i = 0; i < model->model->layers->size(); ++i) {
    auto* L = model->model->layers[i]->as<DecoderLayerImpl>();
    auto h = x + L->self_attn(L->input_layernorm(x), cos, sin);
    auto& m = *L->mlp;
    x = h + SketchSwiGLU::apply(L->post_attention_layernorm(h), m.gate_proj->weight, m.up_proj->weight,
                                m.down_proj->weight);
  }
  return model->model->norm(x);
}

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// A seed from the run itself: every token id of the batch, and the step.
uint64_t batch_seed(const torch::Tensor& batch, int64_t step) {
  auto ids = batch.to(torch::kCPU).contiguous();
  const int64_t* p = ids.data_ptr<int64_t>();
  uint64_t h = splitmix(static_cast<uint64_t>(step) + 0x5EEDULL);
  for (int64_t i = 0; i < ids.numel(); ++i) h = splitmix(h ^ static_cast<uint64_t>(p[i]));
  return h;
}

// Count sketch of positions 0..N-1: a bucket in [0, N / SKETCH_DEN) and a sign for each.
// Returns [2, N]: row 0 the buckets, row 1 the signs (+-1).
torch::Tensor sketch(int64_t N, uint64_t seed, torch::Device device) {
  std::mt19937_64 rng(seed);
  const int64_t k = std::max<int64_t>(1, N / SKETCH_DEN);
  std::vector<int64_t> v(2 * N);
  for (int64_t i = 0; i < N; ++i) {
    const uint64_t r = rng();
    v[i] = static_cast<int64_t>(r % static_cast<uint64_t>(k));
    v[N + i] = (r >> 63) ? 1 : -1;
  }
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong)).view({2, N}).to(device);
}

struct CvHead : public torch::autograd::Function<CvHead> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor targets, torch::Tensor logits_out, torch::Tensor keep) {
    const int64_t N = hidden.size(0), V = weight.size(0);
    const double inv_n = 1.0 / static_cast<double>(N);
    auto t = targets.unsqueeze(1);
    auto logits = hidden.mm(weight.t());  // [N, V], the weight's dtype: the real logits
    if (logits_out.numel() > 0) logits_out.copy_(logits);
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);  // [N, V] float32
    auto loss = -logp.gather(1, t).sum() * inv_n;
    auto grad = logp.exp_();                      // P
    auto P_all = grad.clone();                    // [N, V] float32
    grad.mul_(inv_n);                             // P / N, as the reference
    auto p_mean = grad.sum(0);                    // [V]
    grad.scatter_add_(1, t, torch::full({N, 1}, -inv_n, grad.options()));
    auto d_hidden = grad.to(weight.scalar_type()).mm(weight);  // exact, as the reference
    grad = torch::Tensor();

    auto hf = hidden.to(torch::kFloat32);  // [N, H]
    auto h_mean = hf.mean(0);              // [H]
    auto hc = hf - h_mean;                 // [N, H]
    // Control variate: sum_i (lin_i - p_mean) hc_i^T / N = diag(p_mean) (A - 1 p_mean^T A), A = W Hc^T Hc / N.
    auto M = hc.t().mm(hc).mul_(inv_n);                        // [H, H]
    auto A = weight.to(torch::kFloat32).mm(M);                 // [V, H]
    auto pA = p_mean.unsqueeze(0).mm(A);                       // [1, H]
    auto d_weight = A.sub_(pA).mul_(p_mean.unsqueeze(1));      // [V, H]
    // Residual (p_i - lin_i) of every position, count-sketched: sum_i r_i hc_i^T estimated as
    // (S^T R)^T (S^T Hc) with S the sketch (one bucket and sign per position): unbiased, and its
    // error is made of cross-position terms r_i hc_j^T (i != j) only.
    auto l_mean = logits.sum({0}, false, torch::kFloat32).mul_(inv_n);  // [V]
    auto Z = logits.to(torch::kFloat32).sub_(l_mean);                    // [N, V]
    auto zp = Z.mv(p_mean).unsqueeze(1);                                 // [N, 1]
    auto lin = Z.sub_(zp).add_(1.0).mul_(p_mean.unsqueeze(0));           // [N, V]
    auto resid = P_all.sub_(lin);                                        // [N, V]
    auto bucket = keep[0], sign = keep[1].to(torch::kFloat32).unsqueeze(1);
    const int64_t k = std::max<int64_t>(1, N / SKETCH_DEN);
    auto Rs = torch::zeros({k, V}, resid.options()).index_add_(0, bucket, resid.mul_(sign));
    auto Hs = torch::zeros({k, hidden.size(1)}, hc.options()).index_add_(0, bucket, hc * sign);
    d_weight.add_(Rs.t().mm(Hs).mul_(inv_n));
    // Exact mean-field and sparse parts.
    d_weight.add_(p_mean.unsqueeze(1) * h_mean.unsqueeze(0));
    auto sparse = torch::zeros({V, hidden.size(1)}, hf.options()).index_add_(0, targets, hf).mul_(inv_n);
    d_weight.sub_(sparse);
    ctx->save_for_backward({d_hidden, d_weight.to(weight.scalar_type())});
    return loss;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto g = grad_out[0];
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor cv_head(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& ids,
                      torch::Tensor logits_out, int64_t step) {
  const int64_t S = ids.size(1), H = hidden.size(-1);
  auto h = hidden.narrow(1, 0, S - 1).reshape({-1, H});
  auto targets = ids.narrow(1, 1, S - 1).reshape({-1});
  auto out2d = logits_out.defined() ? logits_out.view({-1, weight.size(0)}) : torch::empty({0}, weight.options());
  auto keep = sketch(h.size(0), batch_seed(ids, step), hidden.device());
  return CvHead::apply(h, weight, targets, out2d, keep);
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t step = 0; step < num_steps; ++step) TORCH_CHECK(data.next(&batches[step]), "data ran out");
  const int64_t B = data.batch_size(), S = data.seq_len();
  // On the GPU every layer recomputes its activations, so that the unchunked loss head of the
  // late steps fits a Qwen2.5-7B shape beside them (no effect on the numerics).
  if (device.is_cuda()) model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, true));
  auto lmw = model->lm_head_weight();
  // AdamW as the reference applies it on the CPU (AdamW::step's unfused path, the same function), with
  // the moments here so that a sketched step can feed its second moment an unbiased g^2.
  std::vector<torch::Tensor> params = model->parameters(), exp_avg, exp_avg_sq;
  std::vector<bool> is_mlp, is_emb;
  for (auto& item : model->named_parameters()) {
    is_mlp.push_back(item.key().find(".mlp.") != std::string::npos);
    is_emb.push_back(item.key().find("embed_tokens") != std::string::npos);
  }
  for (const auto& p : params) {
    exp_avg.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
  const int64_t first_late = std::max<int64_t>(1, num_steps - LATE);  // a one-step call stays exact
  std::mt19937_64 rng(batch_seed(batches[0], 77));
  g_mlp.rng = &rng;
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    const bool last = step == num_steps - 1;
    const bool sketched = num_steps > 1 && step >= num_steps - SK_STEPS;
    g_mlp.on = sketched;
    g_mlp.v.clear();
    for (size_t i = 0; i < params.size(); ++i)
      if (is_mlp[i]) g_mlp.v[params[i].data_ptr()] = exp_avg_sq[i];
    torch::Tensor logits;
    if (last) logits = torch::empty({B, S - 1, model->config.vocab_size}, torch::TensorOptions().dtype(lmw.scalar_type()).device(device));
    auto h = hidden_states(model, batch);
    if (step < first_late) loss = linear_cross_entropy(h, lmw, batch, logits);  // the reference's arithmetic
    else loss = cv_head(h, lmw, batch, logits, step);
    loss.backward();
    g_mlp.on = false;
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) {
        if (!params[i].grad().defined()) continue;
        auto var = g_mlp.var.find(params[i].data_ptr());
        if (VFIX != 0 && sketched && var != g_mlp.var.end()) {
          // AdamW then gives v = beta2 v + (1 - beta2) max(g^2 - VFIX var, 0)-ish, never below beta2 v.
          auto g2 = params[i].grad().to(torch::kFloat32).square();
          auto& v = exp_avg_sq[i];
          v.copy_((v.to(torch::kFloat32) - torch::minimum(var->second.mul(VFIX), g2).mul_((1.0 - optimizer.beta2) / optimizer.beta2)).clamp_min_(0.0));
        }
        OptimizerConfig cfg = optimizer;
        if (sketched && is_emb[i]) cfg.lr *= 1.0 + COVER_EMB;
        adamw_unfused_step_(params[i], params[i].grad(), exp_avg[i], exp_avg_sq[i], step + 1, cfg);
        params[i].mutable_grad() = torch::Tensor();
      }
      g_mlp.var.clear();
    }
    result.total_tokens += batch.numel();
    if (last) result.logits = logits;
    data.step_done();  // the weights after this step, for the trajectory check
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
