// The judge's checks that read a run's weight differences one position at a
// time, lm_head's and every decoder linear layer's, from one forward and
// backward per four rows of each timed batch. They read the parameter memory only.
#include <array>
#include <cmath>
#include <limits>
#include <map>

#include "evaluator.h"
#include "linear_tap.h"

namespace tournament {

namespace {

// float32 products on tensor cores (TF32) on the GPU for the scope's life: a
// direction needs no more, and in full float32 a 7B model's [V, N] x [N, H]
// products take seconds. Put back as found.
struct Tf32Products {
  at::Context& ctx = at::globalContext();
  const bool was = ctx.allowTF32CuBLAS();
  Tf32Products() { ctx.setAllowTF32CuBLAS(true); }
  ~Tf32Products() { ctx.setAllowTF32CuBLAS(was); }
};

// sum a^2 / sum b^2 - 1 (head_position_excess, layer_positions); identical
// weights give 0 / 0: no excess; NaN: infinite.
double position_excess(double sa, double sb) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  if (std::isnan(sa) || std::isnan(sb)) return inf;
  return sb > 0 ? sa / sb - 1.0 : sa > 0 ? inf : 0.0;
}

// Below this relative difference from the reference's update (the tensor
// kind's, as kind_rel_errors), a position excess counts in proportion to
// (e / kPositionJitter)^2, as if read against a difference of that size. A
// near-identical computation (the baseline's fused loss against an unfused
// one, on the CPU) differs by a handful of flipped elements, each flipped by
// the largest single term of its sum: the matched share of so small a
// difference can be large (1.8 seen at e < 5e-5, 4.8 in CI) and means nothing.
// Measured on the tiny CPU default (docs/measurements/2026-12-04-position-jitter.md):
// such jitter at e up to 0.016, honest variants at 0.005 and more, every
// cheat at 0.028 and more; on the H200 every kind of every run (the baseline
// against itself included) at 0.022 and more.
constexpr double kPositionJitter = 0.01;

double damped(double excess, double rel_error) {
  if (!(rel_error < kPositionJitter)) return excess;  // NaN and inf: as measured
  const double r = rel_error / kPositionJitter;
  return excess * r * r;
}

double kind_error(const Comparison& c, const std::string& kind) {
  for (const auto& [k, e] : c.kind_rel_errors)
    if (k == kind) return e;
  return 0;  // the reference left it unchanged: nothing to read
}

// [n, 2] -> [2]: sum a_i^2 and sum b_i^2 over a block of n positions, a_i =
// dy_i . u_i and b_i = dy_j . u_i with j half the block away (another row at
// the same place; a one-row block pairs its halves).
torch::Tensor position_sums(const torch::Tensor& dy, const torch::Tensor& u) {
  const int64_t n = dy.size(0), half = n / 2;
  auto a = (dy * u).sum(1);  // [n]
  auto b = torch::cat({(dy.narrow(0, half, n - half) * u.narrow(0, 0, n - half)).sum(1),
                       (dy.narrow(0, 0, half) * u.narrow(0, n - half, half)).sum(1)});  // [n]
  return torch::stack({a.square().sum(), b.square().sum()});
}

// [n] x [n] -> []: sum over the pairs of position_sums' b of |dy_j|^2 |x_i|^2,
// what sum b_i^2 would be per unit of a white difference's variance.
torch::Tensor mismatched_norms(const torch::Tensor& dy_sq, const torch::Tensor& x_sq) {
  const int64_t n = dy_sq.size(0), half = n / 2;
  return (dy_sq.narrow(0, half, n - half) * x_sq.narrow(0, 0, n - half)).sum() +
         (dy_sq.narrow(0, 0, half) * x_sq.narrow(0, n - half, half)).sum();
}

}  // namespace

void Evaluator::position_checks(const Kept& ref, uint64_t seed, Comparison& c) {
  Tf32Products tf32;
  // lm_head: this run's final weights against the reference's, and the
  // reference's update from the regenerated start.
  const auto W = model_->lm_head_weight();  // [V, H], this run's final (tied: the embedding)
  size_t index = 0;
  std::string name;
  for (auto& item : model_->named_parameters()) {
    if (item.value().data_ptr() == W.data_ptr()) {
      name = item.key();
      break;
    }
    ++index;
  }
  TORCH_CHECK(!name.empty(), "evaluator: lm_head's weight is not a parameter");
  torch::Tensor Wf, diff;  // [V, H]
  double update = 0;
  {
    torch::NoGradGuard no_grad;
    auto w0 = torch::empty_like(W);
    start_tensor(w0, name, index, seed);
    Wf = W.to(torch::kFloat32);
    const auto Wr = ref.weights[index].to(cfg_.device).to(torch::kFloat32);
    update = (Wr - w0.to(torch::kFloat32)).norm().item<double>();
    diff = Wf - Wr;
  }
  const int64_t B = cfg_.batch_size, S = cfg_.seq_len, V = W.size(0), H = W.size(1);

  // Each decoder linear layer's difference from the reference's, dW [out, in]
  // (in the parameters' dtype: a few ulps apart, the difference is exact), and
  // per timed batch its sums of a_i^2 and b_i^2.
  struct Tapped {
    std::string kind;
    torch::Tensor diff;  // [out, in]
    torch::Tensor sums;  // [3], this batch's: sum a_i^2, sum b_i^2, mismatched_norms
    torch::Tensor square_sum;  // []: sum dW^2, for what a white difference of its size reads
  };
  std::vector<Tapped> tapped;
  std::map<const void*, size_t> by_weight;  // parameter memory -> index in tapped
  {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (auto& item : model_->named_parameters()) {
      const auto& w = item.value();
      if (item.key().rfind("model.layers.", 0) == 0 && w.dim() == 2) {
        by_weight[w.data_ptr()] = tapped.size();
        auto d = w - ref.weights[i].to(w.device());
        auto square_sum = d.to(torch::kFloat32).square().sum();
        tapped.push_back({tensor_kind(item.key()), d, {}, square_sum});
      }
      ++i;
    }
  }
  TORCH_CHECK(!tapped.empty(), "evaluator: the model has no decoder linear layers");
  // Every tapped output depends on the first layer's input norm: a gradient
  // asked for it alone runs the whole backward, without the weights' gradients.
  auto anchor = model_->model->layers[0]->as<DecoderLayerImpl>()->input_layernorm->weight;
  // Each layer's hook reads dy in the backward, with the input x its forward saw.
  auto read = [&](size_t k, const torch::Tensor& x, const torch::Tensor& dy) {
    auto& e = tapped[k];
    auto xc = x.reshape({-1, x.size(-1)}).to(torch::kFloat32);    // [n, in]
    auto gc = dy.reshape({-1, dy.size(-1)}).to(torch::kFloat32);  // [n, out]
    if (xc.size(0) < 2) return;
    xc.sub_(xc.mean(0, true));
    gc.sub_(gc.mean(0, true));
    auto u = xc.mm(e.diff.to(torch::kFloat32).t());  // [n, out]: dW xc_i as rows
    e.sums.narrow(0, 0, 2).add_(position_sums(gc, u));
    e.sums[2].add_(mismatched_norms(gc.square().sum(1), xc.square().sum(1)));
  };
  LinearTap tap = [&](const LinearImpl& layer, const torch::Tensor& x, const torch::Tensor& y) {
    auto found = by_weight.find(layer.weight.data_ptr());
    if (found == by_weight.end()) return;
    y.register_hook([&read, k = found->second, x = x.detach()](const torch::Tensor& dy) { read(k, x, dy); });
  };

  // One forward per four rows of each timed batch serves both: the layers read
  // it through its backward, lm_head its final hidden states (a 7B model's
  // float32 probabilities for 4 x 1023 positions are 2.5 GB).
  std::vector<torch::Tensor> dense;      // cfg_.steps x [V, H]: D_t = P^T H / N - p_mean h_mean^T
  std::vector<torch::Tensor> positions;  // cfg_.steps x [3]: lm_head's sum a_i^2, sum b_i^2, mismatched_norms
  std::vector<torch::Tensor> per_batch;  // cfg_.steps x [tapped, 3]: each layer's
  for (int64_t t = 0; t < cfg_.steps; ++t) {
    for (auto& e : tapped) e.sums = torch::zeros({3}, e.diff.options().dtype(torch::kFloat32));
    auto ids = timed_tokens_.narrow(0, t * B, B).to(cfg_.device);  // [B, S]
    auto D = torch::zeros({V, H}, Wf.options());
    auto p_sum = torch::zeros({V}, Wf.options());
    auto h_sum = torch::zeros({H}, Wf.options());
    auto ab = torch::zeros({3}, Wf.options());  // sum a_i^2, sum b_i^2, mismatched_norms
    for (int64_t r = 0; r < B; r += 4) {
      auto rows = ids.narrow(0, r, std::min<int64_t>(4, B - r));  // [b, S]
      torch::Tensor hidden;                                         // [b, S, H]
      {
        torch::AutoGradMode grad_mode(true);
        torch::Tensor loss;
        {
          ScopedLinearTap scope(tap);
          hidden = model_->hidden_states(rows);
          loss = linear_cross_entropy(hidden, model_->lm_head_weight(), rows);
        }
        torch::autograd::grad({loss}, {anchor});  // the graph goes with it
      }
      torch::NoGradGuard no_grad;
      auto h = hidden.detach().narrow(1, 0, S - 1).reshape({-1, H}).to(torch::kFloat32);  // [n, H]
      hidden = torch::Tensor();
      auto p = torch::softmax(h.mm(Wf.t()), 1);  // [n, V]
      D.addmm_(p.t(), h);
      p_sum.add_(p.sum(0));
      h_sum.add_(h.sum(0));
      // Per position, centred on this block: a_i = pc_i^T dW hc_i, b_i pairs pc of the
      // position half the block away with hc_i.
      if (h.size(0) < 2) continue;
      p.sub_(p.mean(0, true));  // pc [n, V]
      auto hc = h - h.mean(0, true);
      auto g = hc.mm(diff.t());  // [n, V]: dW hc_i as rows
      ab.narrow(0, 0, 2).add_(position_sums(p, g));
      ab[2].add_(mismatched_norms(p.square().sum(1), hc.square().sum(1)));
    }
    torch::NoGradGuard no_grad;
    const double n = static_cast<double>(B * (S - 1));
    D.div_(n).sub_(torch::outer(p_sum.div_(n), h_sum.div_(n)));
    dense.push_back(D);
    positions.push_back(ab);
    std::vector<torch::Tensor> sums;
    for (auto& e : tapped) sums.push_back(e.sums);
    per_batch.push_back(torch::stack(sums));
  }
  torch::NoGradGuard no_grad;

  // lm_head. What the batches share (the data's common statistics, and on the
  // GPU the direction honest rounding differences grow along in every step
  // alike) is taken out: each batch's own part, E_t = D_t - mean_s D_s, is
  // what only that batch's step knows.
  auto mean = torch::stack(dense).mean(0);  // [V, H]
  std::vector<torch::Tensor> sums;          // per batch: <diff, E_t>, ||E_t||
  for (auto& D : dense) {
    D.sub_(mean);
    sums.push_back(torch::stack({(diff * D).sum(), D.norm()}).to(torch::kFloat64));
  }
  const auto host = torch::stack(sums).to(torch::kCPU).contiguous();  // [steps, 2]
  const auto pos = torch::stack(positions).to(torch::kCPU).to(torch::kFloat64).contiguous();  // [steps, 3]
  const double head_white = diff.square().sum().item<double>() / static_cast<double>(V * H);  // a white difference's variance
  const double* v = host.data_ptr<double>();
  const double* ab = pos.data_ptr<double>();
  const double head_error = kind_error(c, tensor_kind(name));
  c.head_alignment.clear();
  c.head_position_excess.clear();
  c.head_pair_energy.clear();
  constexpr double inf = std::numeric_limits<double>::infinity();
  for (int64_t t = 0; t < cfg_.steps; ++t) {
    const double dot = v[2 * t], norm = v[2 * t + 1];
    c.head_alignment.push_back(std::isnan(dot) ? inf : dot / std::max(norm * update, 1e-30));
    c.head_position_excess.push_back(damped(position_excess(ab[3 * t], ab[3 * t + 1]), head_error));
    c.head_pair_energy.push_back(ab[3 * t + 2] > 0 && head_white > 0 ? ab[3 * t + 1] / ab[3 * t + 2] / head_white : 0.0);
  }

  // The decoder's linear layers, pooled per kind over the layers.
  const auto layers = torch::stack(per_batch).to(torch::kCPU).to(torch::kFloat64).contiguous();  // [steps, tapped, 3]
  std::vector<torch::Tensor> energies;
  for (const auto& e : tapped) energies.push_back(e.square_sum);
  const auto squares = torch::stack(energies).to(torch::kCPU).to(torch::kFloat64).contiguous();  // [tapped]
  std::map<std::string, std::pair<double, double>> white_kinds;  // kind -> (sum dW^2, numel) over the layers
  for (size_t k = 0; k < tapped.size(); ++k) {
    white_kinds[tapped[k].kind].first += squares.data_ptr<double>()[k];
    white_kinds[tapped[k].kind].second += static_cast<double>(tapped[k].diff.numel());
  }
  const double* lv = layers.data_ptr<double>();
  const size_t nt = tapped.size();
  c.layer_positions.clear();
  c.layer_pair_energy.clear();
  for (int64_t t = 0; t < cfg_.steps; ++t) {
    std::map<std::string, std::array<double, 3>> kinds;  // kind -> sums pooled over the layers
    for (size_t k = 0; k < nt; ++k) {
      auto& pooled = kinds[tapped[k].kind];
      for (int j = 0; j < 3; ++j) pooled[j] += lv[3 * (t * nt + k) + j];
    }
    Comparison::LayerPositions worst{"", -inf};
    std::vector<std::pair<std::string, double>> energy;
    for (const auto& [kind, pooled] : kinds) {
      const double excess = damped(position_excess(pooled[0], pooled[1]), kind_error(c, kind));
      if (excess > worst.excess) worst = {kind, excess};
      const auto& [sq, numel] = white_kinds[kind];
      energy.emplace_back(kind, pooled[2] > 0 && sq > 0 ? pooled[1] / pooled[2] / (sq / numel) : 0.0);
    }
    c.layer_positions.push_back(worst);
    c.layer_pair_energy.push_back(std::move(energy));
  }
  // Per kind, the mean over the timed batches less 1 (what a white difference
  // reads), damped as the position excess where the kind's difference is jitter.
  c.layer_pair_excess.clear();
  if (!c.layer_pair_energy.empty()) {
    for (size_t j = 0; j < c.layer_pair_energy.front().size(); ++j) {
      const auto& kind = c.layer_pair_energy.front()[j].first;
      double sum = 0;
      for (const auto& batch : c.layer_pair_energy) sum += batch[j].second;
      const double mean = sum / static_cast<double>(c.layer_pair_energy.size());
      c.layer_pair_excess.emplace_back(kind, damped(mean - 1.0, kind_error(c, kind)));
    }
  }
}

}  // namespace tournament
