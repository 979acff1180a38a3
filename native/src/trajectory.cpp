// The trajectory check: the judge repeats every timed step itself, from the
// weights recorded before it, and compares its result with the run's.
//
// The other checks compare a run's final weights with the reference's. Five
// bf16 steps from a random start are chaotic, so those checks must tolerate
// the spread that honest rounding grows into over the run, and a cheat that
// estimates a gradient (a sketch, a linearised tail) can hide its error in
// that spread. Here nothing grows: step t is judged from the run's own
// weights before it, so an honest step differs from the judge's only by one
// step's rounding, while a changed gradient shows at its full size in that
// very step. The plugin records the weights after each step but the last
// (data.step_done(), train_api.h); the first step starts from the run's start
// (which the judge wrote) and the last ends in the final weights (which the
// judge reads). Every recorded state is both the end of one judged step and
// the start of the next, so a run whose recorded states all pass would be,
// step by step, the training the contract asks for, whatever the plugin did
// between.
//
// The reading, per step and kind of tensor (pooled over the layers): element
// by element, how far the judge's unrounded result would have to move to
// round to the run's recorded weight (0 where it does already), in the sum of
// squares; over the same summed for two steps of its own taken again, one
// with its gradient moved by rounding-size noise (noisy_gradient), one with
// the gradient of the batch's two halves accumulated (an honest way to
// compute it that rounds otherwise, as gradient accumulation and two
// data-parallel ranks do). So the unit is how far honest rounding lands on
// this machine: CPUs without AVX-512 round libtorch's bf16 products
// otherwise, and there the halves alone moved lm_head's steps 1.3 times the
// synthetic noise (docs/measurements/2026-12-05-trajectory-split.md). Only
// elements with a history count (the first step has no reading of its own;
// its gradient enters the moments every later step is judged with).
// lm_head's, the MLP's and the attention's are judged, each kind with a
// limit of its own (head_, mlp_ and attention_trajectory_excess): honest
// kernels read wider on the attention's weights than on the MLP's
// (docs/measurements/2026-12-05-mlp-trajectory.md, 2026-12-05-attack22.md).
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <map>
#include <random>

#include <ATen/Parallel.h>

#include "compat.h"
#include "evaluator.h"

namespace tournament {

namespace {

// A model over the bytes of `buffer` (the parameter layout's, on its device).
ParamAllocator buffer_allocator(const torch::Tensor& buffer, const protocol::ParamLayout& layout, torch::Dtype dtype) {
  auto index = std::make_shared<std::map<std::string, size_t>>();
  for (size_t i = 0; i < layout.specs.size(); ++i) (*index)[layout.specs[i].name] = i;
  auto base = static_cast<char*>(buffer.data_ptr());
  const auto options = torch::TensorOptions().dtype(dtype).device(buffer.device());
  return [base, &layout, options, index](const std::string& name, at::IntArrayRef shape) {
    const size_t i = index->at(name);
    TORCH_CHECK(shape.vec() == layout.specs[i].shape, "parameter layout: shape mismatch for ", name);
    return torch::from_blob(base + layout.offsets[i], shape, options);
  };
}

// The distance between neighbouring bf16 values at a (float32 holding bf16 values).
torch::Tensor bf16_spacing(const torch::Tensor& a) {
  return torch::ldexp(torch::ones_like(a), std::get<1>(torch::frexp(a)) - 8);
}

// Half the distance from w (bf16 values) to its bf16 neighbour on u's side:
// where |w| is a power of two the neighbour toward zero is half as far (the
// twenty-sixth attack pass: a step into the finer spacing below, left out,
// read 0 when the wider one above was taken for both sides).
torch::Tensor half_gap(const torch::Tensor& w, const torch::Tensor& u) {
  const auto [mantissa, exponent] = torch::frexp(w);
  const auto spacing = torch::ldexp(torch::ones_like(w), exponent - 8);
  const auto finer = (mantissa.abs() == 0.5) & ((u - w) * w < 0);  // a power of two, u toward zero
  return torch::where(finer, spacing / 4, spacing / 2);
}

// The most |m_hat| / sqrt(v_hat) can be at step k (from 1) over any gradients:
// by Cauchy-Schwarz on m = (1 - b1) sum b1^(k-j) g_j against
// v = (1 - b2) sum b2^(k-j) g_j^2, (1 - b1) / sqrt(1 - b2) * sqrt(sum over
// j < k of (b1^2 / b2)^j) * sqrt(1 - b2^k) / (1 - b1^k); eps only lowers it.
// 1 at k = 1 (the step is lr times the gradient's sign).
double adamw_reach(const OptimizerConfig& o, int64_t k) {
  double s = 0, r = 1;
  for (int64_t j = 0; j < k; ++j, r *= o.beta1 * o.beta1 / o.beta2) s += r;
  return (1 - o.beta1) / std::sqrt(1 - o.beta2) * std::sqrt(s) * std::sqrt(1 - std::pow(o.beta2, k)) /
         (1 - std::pow(o.beta1, k));
}

// The judge's step of one tensor (moments m, v before it; step counts from 1)
// with gradient g, rounded into bf16 as the step's result would be (float32
// holding bf16 values); p, m and v are left as they were.
torch::Tensor trial_step(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                         int64_t step, const OptimizerConfig& cfg) {
  auto p2 = p.clone(), m2 = m.clone(), v2 = v.clone();
  adamw_unfused_step_(p2, g.to(p.device()), m2, v2, step, cfg);
  return p2.to(torch::kFloat32);
}

// Rounding-size noise for a gradient g: 2^-8 of g's RMS over the whole
// tensor, and a generator of (seed, step, index) for the normal draws that
// scale it, drawn chunk after chunk (noisy_gradient below).
double noise_sigma(const torch::Tensor& g) {
  const double n = static_cast<double>(std::max<int64_t>(1, g.numel()));
  return std::ldexp(at::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kFloat32).item<double>() / std::sqrt(n), -8);
}
at::Generator noise_generator(const torch::Device& device, int64_t step, uint64_t seed, size_t index) {
  return compat::seeded_generator(
      device, seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) * 4099 + index + 1)));
}

// g moved by that noise: float32.
torch::Tensor noisy_gradient(const torch::Tensor& g, double sigma, at::Generator& gen) {
  const auto gf = g.to(torch::kFloat32);
  return gf + sigma * at::randn(gf.sizes(), gen, gf.options());
}

// Calls f(slice) for consecutive slices of dim 0 of `t` (views; t itself if
// it has no dims), of at most 2^26 elements where rows allow: judging a slice
// makes about fifteen float32 temporaries of it, and a 7B model's embedding
// (545M elements) whole would need 33 GB of them beside the replay's state.
// `slice(x)` gives the same rows of another tensor of t's shape.
using Slice = std::function<torch::Tensor(const torch::Tensor&)>;
void each_slice(const torch::Tensor& t, const std::function<void(const Slice&)>& f) {
  constexpr int64_t kElements = int64_t{1} << 26;
  if (t.dim() == 0) return f([](const torch::Tensor& x) { return x; });
  const int64_t rows = t.size(0), row = std::max<int64_t>(1, t.numel() / std::max<int64_t>(1, rows));
  const int64_t step = std::max<int64_t>(1, kElements / row);
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t n = std::min(step, rows - r0);
    f([r0, n](const torch::Tensor& x) { return x.narrow(0, r0, n); });
  }
}

// A batch of n rows as its two halves: (first row, rows) each. The judge's
// honest alternative to the whole batch's gradient is the halves' accumulated.
std::array<std::pair<int64_t, int64_t>, 2> halves_of(int64_t n) { return {{{0, n / 2}, {n / 2, n - n / 2}}}; }

// |a - b| / |b| of each row (dim 0; float32) [rows]; infinite where not
// finite. Read per row, so that an error confined to a few rows is not
// diluted by the batch's others (attack pass 27: one row of 16 could be 8% off
// under a limit of 2% over the whole batch).
torch::Tensor row_errors(const torch::Tensor& a, const torch::Tensor& b) {
  const auto bf = b.to(torch::kFloat32).flatten(1);
  const auto d = (a.to(torch::kFloat32).flatten(1) - bf).norm(2, {1});  // [rows]
  const auto n = bf.norm(2, {1});
  const auto e = torch::where(n > 0, d / n, torch::where(d > 0, torch::full_like(d, INFINITY), torch::zeros_like(d)));
  return torch::where(torch::isfinite(d) & torch::isfinite(n), e, torch::full_like(e, INFINITY));
}

double largest(const torch::Tensor& errors) { return errors.numel() ? errors.max().item<double>() : 0.0; }

// The loss head's record of one step (train_api.h, version 5): `inputs` and
// `grads` [B, S, H] (the shared region's, read once here), the judge's own
// `hidden` [B, S, H] from the weights the step started from, the step's
// `batch` [B, S] and lm_head's weight at the step's start; with `ranks`
// ranks, each rank's loss is the mean over its own contiguous B / ranks rows
// (the gradient it records is of that loss). The run's input must be the
// judge's up to the forward's rounding; the run's gradient must be what the
// loss head gives for the run's own input, which differs from the judge's
// only by the loss head's rounding. So a gradient of the loss head's input
// that was estimated rather than computed (the softmax tail fitted, attack
// pass 23) shows at its own size here, not diluted into the layers' steps,
// where honest kernels' rounding spreads wide.
// Returns lm_head's gradient at the run's recorded input, the whole batch's
// and its two halves' accumulated, where the record is whole (every row
// finite; undefined otherwise): lm_head's step is judged from those, so that
// an honest forward's rounding (the recorded input within head_input_error
// of the judge's) does not widen lm_head's reading, and only the loss head's
// own rounding does.
struct HeadWeightGrads {
  torch::Tensor full, halves;  // [V, H] each
};
HeadWeightGrads judge_head_record(RunOutcome::TrajectoryStep& step, const torch::Tensor& inputs,
                                  const torch::Tensor& grads, const torch::Tensor& hidden, const torch::Tensor& batch,
                                  const torch::Tensor& lm_head, int64_t ranks) {
  const int64_t B = inputs.size(0), share = B / ranks;
  const auto device = hidden.device();
  const auto in = inputs.to(device, hidden.scalar_type(), /*non_blocking=*/false, /*copy=*/true);  // [B, S, H]
  const auto grad = grads.to(device, hidden.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  {
    torch::NoGradGuard no_grad;
    // The last position feeds no loss (its logits are not trained on, and no
    // position attends to it), so a run need not compute it at all: the
    // judge's own input (and a gradient of 0) stands there.
    const int64_t S = in.size(1);
    in.narrow(1, S - 1, 1).copy_(hidden.detach().narrow(1, S - 1, 1));
    grad.narrow(1, S - 1, 1).zero_();
    step.head_rows_missing = (~(torch::isfinite(in).flatten(1).all(1) & torch::isfinite(grad).flatten(1).all(1)))
                                 .sum()
                                 .item<int64_t>();
    step.head_input_error = largest(row_errors(in, hidden.detach()));
  }
  // The ranks' losses summed: each row's gradient is its own rank's loss's.
  auto ranks_loss = [&](const torch::Tensor& x, const torch::Tensor& w) {
    auto total = linear_cross_entropy(x.narrow(0, 0, share), w, batch.narrow(0, 0, share));
    for (int64_t r = 1; r < ranks; ++r) {
      total = total + linear_cross_entropy(x.narrow(0, r * share, share), w, batch.narrow(0, r * share, share));
    }
    return total;
  };
  // The judge's gradients at the run's input: leaves of its own, lm_head's
  // a detached alias (the replay's parameters' gradients are not touched).
  auto x = in.detach().requires_grad_(true);
  auto w = lm_head.detach().requires_grad_(true);
  ranks_loss(x, w).backward();
  // The same in float32 throughout (the logits, their gradient and both
  // products), rounded once into the record's dtype: the other arithmetic the
  // contract allows for this gradient (train_api.h). The run's is read against
  // the nearer of the two, so either honest arithmetic reads about 0 and what
  // is left is the run's own departure from both (attack pass 25: a tail fit
  // read 0.003 to 0.004, the float32 loss head 0.002 against the first alone).
  auto x32 = in.detach().to(torch::kFloat32).requires_grad_(true);
  ranks_loss(x32, lm_head.detach().to(torch::kFloat32)).backward();
  {
    torch::NoGradGuard no_grad;
    step.head_grad_error =  // each row against its nearer arithmetic
        largest(torch::minimum(row_errors(grad, x.grad()), row_errors(grad, x32.grad().to(grad.scalar_type()))));
  }
  x32 = torch::Tensor();
  HeadWeightGrads out;
  if (step.head_rows_missing > 0) return out;
  out.full = ranks > 1 ? w.grad() / static_cast<double>(ranks) : w.grad();  // the mean of the ranks' equal shares
  if (B > 1) {
    auto w2 = lm_head.detach().requires_grad_(true);
    for (auto [start, rows] : halves_of(B)) {
      (linear_cross_entropy(in.narrow(0, start, rows), w2, batch.narrow(0, start, rows)) * (double(rows) / B)).backward();
    }
    out.halves = w2.grad();
  }
  return out;
}

// How much of a product's small-term part a run's value lacks, read two
// ways over the step's rows and layers, for each share q of kSmallShares:
// the part of `product`(operand) that each position's smallest q of
// |operand| make (`product` of the operand with the rest zeroed), and
//   share: the error's component along that part over its size (summed into
//   num[q], den[q]; the fitted share is -num / den). Honest rounding does not
//   follow that part; a run that dropped those terms lacks all of it (share
//   1), however small it is next to the product (attack pass 33: every
//   link's size limit spent);
//   energy: `along`(error), each term's weight vector's share of the error's
//   energy (the error's component along it, squared, over its norm squared),
//   summed over the small terms less what the rest's mean gives as many:
//   the error's excess along the small terms, as a share of its energy along
//   every term, then as a size relative to the value (the error's and the
//   value's energies, err and ref, which the caller sums). Honest rounding
//   lands evenly on every term's vector, or more on the large terms' (their
//   operand rounds by more): an excess of 0 but for sampling (a run whose
//   error is a few flipped roundings samples it thinly). Small terms dropped
//   without bias (each kept with probability |t| / cut at the cut's size:
//   attack pass 34) leave no share but an error that lies along their own
//   vectors, most of its energy in excess.
constexpr std::array<double, 4> kSmallShares{0.05, 0.1, 0.2, 0.35};
struct SmallTerms {
  std::array<double, 4> num{}, den{}, small{}, small_n{}, rest{}, rest_n{};
  double err = 0, ref = 0;
  double share() const {
    double out = 0;
    for (size_t i = 0; i < num.size(); ++i) out = std::max(out, den[i] > 0 ? -num[i] / den[i] : 0.0);
    return std::isfinite(out) ? out : INFINITY;
  }
  double energy() const {
    double out = 0;
    for (size_t i = 0; i < small.size(); ++i) {
      const double all = small[i] + rest[i];
      if (small_n[i] == 0 || rest_n[i] == 0 || !(all > 0)) continue;
      const double excess = std::max(0.0, small[i] - rest[i] * small_n[i] / rest_n[i]) / all;
      out = std::max(out, ref > 0 ? std::sqrt(excess * err / ref) : INFINITY);
    }
    return std::isfinite(out) ? out : INFINITY;
  }
};
// Each position's smallest q of |operand| over its last dim, for each q of `shares` (bool [..., K] each).
std::vector<torch::Tensor> small_masks(const torch::Tensor& operand, at::ArrayRef<double> shares) {
  const auto mag = operand.abs().to(torch::kFloat32);
  const int64_t K = operand.size(-1);
  std::vector<torch::Tensor> out;
  for (const double q : shares) {
    const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(q * K));
    out.push_back(mag <= std::get<0>(mag.kthvalue(k, -1, /*keepdim=*/true)));
  }
  return out;
}
using TensorFn = std::function<torch::Tensor(const torch::Tensor&)>;
void small_term_fit(const torch::Tensor& operand, const TensorFn& product, const TensorFn& along,
                    const torch::Tensor& error, int64_t S, SmallTerms& acc) {
  const auto e = error.narrow(1, 0, S - 1).to(torch::kFloat32);  // [B, S-1, H]
  const auto energy = along(e);                                    // [B, S-1, K]
  const auto masks = small_masks(operand, kSmallShares);
  const double total = energy.sum().item<double>();
  for (size_t i = 0; i < kSmallShares.size(); ++i) {
    const auto part = product(operand * masks[i].to(operand.scalar_type())).narrow(1, 0, S - 1).to(torch::kFloat32);
    acc.num[i] += (e * part).sum().item<double>();
    acc.den[i] += part.pow(2).sum().item<double>();
    const auto small = masks[i].narrow(1, 0, S - 1);
    const auto n = small.sum().item<double>();
    const auto in_small = (energy * small).sum().item<double>();
    acc.small[i] += in_small;
    acc.small_n[i] += n;
    acc.rest[i] += total - in_small;
    acc.rest_n[i] += static_cast<double>(small.numel()) - n;
  }
}
// `along` for a product whose term k's weight vector is row k of `rows` [K, H].
TensorFn energy_along(const torch::Tensor& rows) {
  const auto r = rows.detach().to(torch::kFloat32);
  const auto norms = r.pow(2).sum(1).clamp_min(1e-30);  // [K]
  return [r, norms](const torch::Tensor& e) { return torch::matmul(e, r.t()).pow(2) / norms; };
}

// The small-term parts of an MLP weight's gradient sum_rows a^T b ([A, B]
// from a [rows, A] and b [rows, B]; its transpose where `transposed`): for
// each q of kGradShares, from each row's smallest q of a, then of b (float32;
// kSmallGrads of them). Finer than the links' shares: a step is read through
// its rounding, where a part dropped beside the one fitted hides it. From 5%:
// leaving out less of the three weight gradients' operands skips under 1.3%
// of a 7B step.
constexpr std::array<double, 6> kGradShares{0.05, 0.07, 0.1, 0.14, 0.2, 0.35};
constexpr size_t kSmallGrads = 2 * kGradShares.size();
std::vector<torch::Tensor> small_gradient_parts(const torch::Tensor& a, const torch::Tensor& b, double scale,
                                                bool transposed) {
  const auto a2 = a.flatten(0, -2).to(torch::kFloat32), b2 = b.flatten(0, -2).to(torch::kFloat32);
  std::vector<torch::Tensor> out;
  auto add = [&](const torch::Tensor& x, const torch::Tensor& y) {
    out.push_back((transposed ? torch::matmul(y.t(), x) : torch::matmul(x.t(), y)) * scale);
  };
  for (const auto& m : small_masks(a2, kGradShares)) add(a2 * m, b2);
  for (const auto& m : small_masks(b2, kGradShares)) add(a2, b2 * m);
  return out;
}

// The same gradient's product-level small-term parts: for each q of
// kProductShares, the sum of its products a[t,i] b[t,n] under one threshold
// over the whole product (the q quantile of |a b|, from a sample of them), a
// rule no position's operand entries follow (attack pass 35: the smallest
// 12% of the products, 3.18% of a 7B step, passed the operand parts). From
// 10%: at 7% honest gradient accumulation reads nearest (0.42 against 0.35;
// docs/measurements/2026-12-06-small-products.md). Every product is tested,
// as such a cheat tests it: a matrix product's multiply-adds without its
// speed, so where a gradient has more than kProductBudget products only a
// sample of the intermediate side's columns (i) is, drawn from host entropy
// after the run (a run that knew them could drop elsewhere), and `where`
// marks their elements.
constexpr std::array<double, 3> kProductShares{0.1, 0.14, 0.2};
constexpr int64_t kProductBudget = int64_t{1} << 28;
struct GradParts {
  std::vector<torch::Tensor> parts;  // kSmallGrads operand parts, then the kProductShares product parts
  torch::Tensor where;               // the product parts' elements computed (bool); undefined: every element
};
GradParts gradient_parts(const torch::Tensor& a, const torch::Tensor& b, double scale, bool transposed) {
  GradParts out{small_gradient_parts(a, b, scale, transposed), torch::Tensor()};
  const auto a2 = a.flatten(0, -2), b2 = b.flatten(0, -2);  // [T, A], [T, N], where they are
  const int64_t T = a2.size(0), A = a2.size(1), N = b2.size(1);
  constexpr int64_t Q = kProductShares.size();
  static_assert(Q == 3, "the loop below keeps one accumulator per share");
  // The thresholds from 2^18 products drawn with a fixed generator (the rule
  // is the same for every run; only where it is read is secret).
  auto gen = at::detail::createCPUGenerator(35);
  const int64_t n = int64_t{1} << 18;
  const auto long_opt = torch::TensorOptions().dtype(torch::kLong);
  const auto rt = torch::randint(T, {n}, gen, long_opt).to(a2.device()),
             ra = torch::randint(A, {n}, gen, long_opt).to(a2.device()),
             rb = torch::randint(N, {n}, gen, long_opt).to(a2.device());
  const auto sample = std::get<0>((a2.index({rt, ra}).to(torch::kFloat32) * b2.index({rt, rb}).to(torch::kFloat32))
                                      .abs().to(torch::kCPU).sort());  // [n]
  std::array<float, Q> taus{};
  for (int64_t q = 0; q < Q; ++q) taus[q] = sample[static_cast<int64_t>(kProductShares[q] * n)].item<float>();
  torch::Tensor cols;  // undefined: every column
  int64_t C = A;
  if (T * A * N > kProductBudget) {
    C = std::max<int64_t>(1, kProductBudget / (T * N));
    std::random_device rd;
    auto host = at::detail::createCPUGenerator((static_cast<uint64_t>(rd()) << 32) | rd());
    cols = std::get<0>(torch::randperm(A, host, long_opt).narrow(0, 0, C).sort());
  }
  // The tested columns [C, T] and the other side [T, N], on the host in float32.
  const auto s = (cols.defined() ? a2.index_select(1, cols.to(a2.device())) : a2)
                     .to(torch::kCPU, torch::kFloat32).t().contiguous();
  const auto bh = b2.to(torch::kCPU, torch::kFloat32).contiguous();
  auto sums = torch::zeros({Q, C, N}, torch::kFloat32);
  const float* sp = s.data_ptr<float>();
  const float* bp = bh.data_ptr<float>();
  float* op = sums.data_ptr<float>();
  at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float* acc0 = op + c * N;
      float* acc1 = op + (C + c) * N;
      float* acc2 = op + (2 * C + c) * N;
      for (int64_t t = 0; t < T; ++t) {
        const float v = sp[c * T + t];
        if (v == 0) continue;
        const float* row = bp + t * N;
        for (int64_t k = 0; k < N; ++k) {
          const float p = v * row[k], m = std::fabs(p);
          acc0[k] += m < taus[0] ? p : 0.0f;
          acc1[k] += m < taus[1] ? p : 0.0f;
          acc2[k] += m < taus[2] ? p : 0.0f;
        }
      }
    }
  });
  sums.mul_(scale);
  const auto device = a.device();
  for (int64_t q = 0; q < Q; ++q) {
    auto part = sums[q];  // [C, N]
    if (cols.defined()) part = torch::zeros({A, N}, torch::kFloat32).index_copy_(0, cols, part);
    out.parts.push_back((transposed ? part.t() : part).to(device));
  }
  if (cols.defined()) {
    const auto where = torch::zeros({A, N}, torch::kBool).index_fill_(0, cols, true);
    out.where = (transposed ? where.t() : where).to(device);
  }
  return out;
}

// A layer's attention, its input norm included, in float32 throughout on
// float32 weights `w` (q, k, v, o; the biases and the norm's weight copied):
// an honest arithmetic other than the reference's. How far its weight
// gradients move a step is part of the record-judged attention's unit: the
// attention's q and k gradients cancel over the tokens, so one rounding of
// its scores or products moves them far in rounding-noise units (the tuned
// example's fused q/k/v product read up to 34 without it). x [B, S, H].
torch::Tensor attention_f32(DecoderLayerImpl& layer, const torch::Tensor& x, const std::array<torch::Tensor, 4>& w,
                            const torch::Tensor& cos, const torch::Tensor& sin) {
  auto& at = *layer.self_attn;
  const auto& norm = *layer.input_layernorm;
  const int64_t B = x.size(0), S = x.size(1), D = at.head_dim;
  const auto f32 = [](const torch::Tensor& t) { return t.defined() ? t.detach().to(torch::kFloat32) : t; };
  const auto xf = f32(x);
  const auto n = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + norm.eps) * f32(norm.weight);  // [B, S, H]
  const auto c = f32(cos), sn = f32(sin);
  const auto rope = [&](const torch::Tensor& t) {  // [B, N, S, D]
    const auto h = t.chunk(2, -1);
    return t * c + torch::cat({-h[1], h[0]}, -1) * sn;
  };
  const auto q = rope(torch::linear(n, w[0], f32(at.q_proj->bias)).view({B, S, at.n_heads, D}).transpose(1, 2));
  const auto k = rope(torch::linear(n, w[1], f32(at.k_proj->bias)).view({B, S, at.n_kv_heads, D}).transpose(1, 2));
  const auto v = torch::linear(n, w[2], f32(at.v_proj->bias)).view({B, S, at.n_kv_heads, D}).transpose(1, 2);
  const auto out = causal_attention(q, k, v, at.kernel).transpose(1, 2).reshape({B, S, at.n_heads * D});
  return torch::linear(out, w[3]);  // [B, S, H]
}

// The layers' record of one step (train_api.h, version 6): `record` [4, L,
// steps, B, S, H] (the shared region's, read once here): every layer's
// residual after the attention, MLP output, MLP output gradient and MLP
// input gradient; `head_inputs`, `head_grads` [B, S, H] the loss head's record
// of the step; `replay` at the weights the step started from; `ranks` as for
// the loss head. The judge computes every layer again from the record alone,
// each link from the one before it, so that each recorded value is read
// against one layer's rounding, not against the judge's own forward and
// backward (which differ from an honest run's by its rounding grown through
// every layer: the tuned example's):
//   forward: the layer's input (the embeddings, or the layer before's
//   residual plus its MLP output) -> the attention's residual -> the MLP's
//   output from the post-attention norm of the recorded residual; after the
//   last layer, the loss head's input;
//   backward: the loss head's recorded gradient -> the last layer's output
//   gradient; each layer's MLP output gradient -> its MLP input gradient ->
//   (with the post-attention norm's and the attention's backward) the output
//   gradient of the layer below.
// An MLP or an attention that skipped part of its work (attack passes 28, 31
// and 32: small terms dropped in the MLP's forward, its input gradient or its
// input) shows at its own size in the link where it was made. Each reading is
// the worst row's relative error (the MLP's links against the nearer of the
// reference's arithmetic and float32 throughout). Fills `grads` and `halves`
// (per layer: gate, up, down) with the gradient the record gives (the whole
// batch's, and its two halves' accumulated), where every row of every layer
// is finite: each MLP weight's step is judged from it too (attack pass 28's
// backward drop shows there), and `small_grads` with its small-term parts
// (small_gradient_parts), which that step must not lack; and
// `attention_grads`, `attention_halves` and `attention_f32_grads` (per layer:
// q, k, v, o) with the attention weights' gradients the record gives, the
// whole batch's, its halves' and the whole batch's in float32 throughout
// (attention_f32), from which each attention weight's step is judged.
void judge_layer_record(RunOutcome::TrajectoryStep& step, const torch::Tensor& record, int64_t t,
                        Qwen2ForCausalLM& replay, const torch::Tensor& batch, const torch::Tensor& head_inputs,
                        const torch::Tensor& head_grads, int64_t ranks, std::vector<std::array<torch::Tensor, 3>>& grads,
                        std::vector<std::array<torch::Tensor, 3>>& halves,
                        std::vector<std::array<GradParts, 3>>& small_grads,
                        std::vector<std::array<torch::Tensor, 4>>& attention_grads,
                        std::vector<std::array<torch::Tensor, 4>>& attention_halves,
                        std::vector<std::array<torch::Tensor, 4>>& attention_f32_grads) {
  auto& layers = *replay->model->layers;
  const int64_t L = static_cast<int64_t>(layers.size()), B = batch.size(0), S = batch.size(1);
  const auto device = batch.device();
  const auto dtype = replay->lm_head_weight().scalar_type();
  grads.assign(L, {});
  halves.assign(L, {});
  small_grads.assign(L, {});
  attention_grads.assign(L, {});
  attention_halves.assign(L, {});
  attention_f32_grads.assign(L, {});
  std::vector<std::array<torch::Tensor, 3>> got(L), got_halves(L);
  std::vector<std::array<torch::Tensor, 4>> got_attention(L), got_attention_halves(L), got_attention_f32(L);
  std::vector<std::array<GradParts, 3>> small(L);
  const auto seen = [&](const torch::Tensor& x) { return x.narrow(1, 0, S - 1); };  // [B, S-1, H]
  // A record copied here, its last position zeroed: that position feeds no
  // loss (a run need not compute it; its gradients are 0), and it reaches no
  // other position forward (causal attention), so a zero is as good as any.
  auto load = [&](const torch::Tensor& r) {
    auto x = r.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
    x.narrow(1, S - 1, 1).zero_();
    return x;
  };
  auto finite_rows = [&](const torch::Tensor& x) { return torch::isfinite(seen(x)).flatten(1).all(1); };  // [B]
  auto worst = [&](double& into, const torch::Tensor& run, const torch::Tensor& judge) {
    into = std::max(into, largest(row_errors(seen(run), seen(judge))));
  };
  auto nearer = [&](double& into, const torch::Tensor& run, const torch::Tensor& a, const torch::Tensor& b) {
    into = std::max(into, largest(torch::minimum(row_errors(seen(run), seen(a)), row_errors(seen(run), seen(b)))));
  };
  auto f32 = [](const torch::Tensor& w) { return w.detach().to(torch::kFloat32); };
  const auto [cos, sin] = replay->rope(S, dtype, device);
  torch::Tensor h, below_grad;  // the layer's input from the record; the recorded output gradient of the layer below
  SmallTerms fwd, bwd;  // the small-term readings of the MLP's two links, over the layers
  {
    torch::NoGradGuard no_grad;
    h = replay->model->embed_tokens(batch);  // [B, S, H]
  }
  for (int64_t l = 0; l < L; ++l) {
    auto& layer = *layers[l]->as<DecoderLayerImpl>();
    auto& mlp = *layer.mlp;
    const auto w_gate = mlp.gate_proj->weight.detach(), w_up = mlp.up_proj->weight.detach(),
               w_down = mlp.down_proj->weight.detach();
    const auto residual = load(record[0][l][t]), out = load(record[1][l][t]), out_grad = load(record[2][l][t]),
               in_grad = load(record[3][l][t]);  // [B, S, H] each
    step.layer_rows_missing += (~(finite_rows(residual) & finite_rows(out) & finite_rows(out_grad) &
                                  finite_rows(in_grad))).sum().item<int64_t>();
    // The attention's residual from the layer's input, once, with its graph: the forward link reads its value, the
    // backward below (the layer below's output gradient, the attention weights' gradients) runs through it.
    auto hl = h.detach().requires_grad_(true);
    const auto attended = hl + layer.self_attn(layer.input_layernorm(hl), cos, sin);  // [B, S, H]
    // The MLP's input (the post-attention norm of the recorded residual), its two products and silu(gate) up [B, S, I].
    torch::Tensor x, gate, up, act;
    {
      torch::NoGradGuard no_grad;
      worst(step.layer_forward_error, residual, attended.detach());
      x = layer.post_attention_layernorm(residual);
      gate = linear_acc32(x, w_gate);
      up = linear_acc32(x, w_up);
      act = torch::silu(gate) * up;
      const auto ours = linear_acc32(act, w_down);    // swiglu_mlp's forward, its products kept
      nearer(step.layer_forward_error, out, ours,
             swiglu_mlp(x.to(torch::kFloat32), f32(w_gate), f32(w_up), f32(w_down)).to(dtype));
      const auto fwd_err = out.to(torch::kFloat32) - ours.to(torch::kFloat32);
      small_term_fit(act, [&](const torch::Tensor& a) { return linear_acc32(a, w_down); }, energy_along(w_down.t()),
                     fwd_err, S, fwd);
      fwd.err += seen(fwd_err).pow(2).sum().item<double>();
      fwd.ref += seen(ours).to(torch::kFloat32).pow(2).sum().item<double>();
    }
    // The MLP's backward from the recorded output gradient: its input
    // gradient (both arithmetics), and its weights' gradients (leaves of
    // their own: the replay's gradients are not touched; each rank's output
    // gradient is of its own share's loss, so the ranks' mean is the sum
    // over every row over the ranks).
    auto leaves = [&] {
      return std::array<torch::Tensor, 3>{w_gate.detach().requires_grad_(true), w_up.detach().requires_grad_(true),
                                          w_down.detach().requires_grad_(true)};
    };
    auto whole = leaves();
    auto xl = x.detach().requires_grad_(true);
    swiglu_mlp(xl, whole[0], whole[1], whole[2]).backward(out_grad);
    auto x32 = x.detach().to(torch::kFloat32).requires_grad_(true);
    swiglu_mlp(x32, f32(w_gate), f32(w_up), f32(w_down)).backward(out_grad.to(torch::kFloat32));
    nearer(step.layer_backward_error, in_grad, xl.grad(), x32.grad().to(dtype));
    {
      // The MLP's input gradient's small terms: d gate W_gate + d up W_up with
      // each position's smallest entries of d gate and d up alone.
      auto g = gate.requires_grad_(true), u = up.requires_grad_(true);
      linear_acc32(torch::silu(g) * u, w_down).backward(out_grad);
      const auto d_gate = g.grad(), d_up = u.grad();  // [B, S, I]
      torch::NoGradGuard no_grad;
      const auto err = in_grad.to(torch::kFloat32) - xl.grad().to(torch::kFloat32);
      small_term_fit(d_gate, [&](const torch::Tensor& a) { return matmul_acc32(a, w_gate); }, energy_along(w_gate), err,
                     S, bwd);
      small_term_fit(d_up, [&](const torch::Tensor& a) { return matmul_acc32(a, w_up); }, energy_along(w_up), err, S,
                     bwd);
      bwd.err += seen(err).pow(2).sum().item<double>();
      bwd.ref += seen(xl.grad()).to(torch::kFloat32).pow(2).sum().item<double>();
      // Each weight gradient's small-term parts (gate: d gate^T x; up: d up^T
      // x; down: out_grad^T act, from act^T out_grad, so that each kind's
      // parts come in the same order: the intermediate side's first), each
      // rank's share of the mean as above.
      const double scale = 1.0 / static_cast<double>(ranks);
      small[l] = {gradient_parts(d_gate, x, scale, false), gradient_parts(d_up, x, scale, false),
                  gradient_parts(act, out_grad, scale, true)};
    }
    for (int k = 0; k < 3; ++k) got[l][k] = ranks > 1 ? whole[k].grad() / static_cast<double>(ranks) : whole[k].grad();
    if (B > 1) {
      auto parts = leaves();
      for (auto [start, rows] : halves_of(B)) {
        swiglu_mlp(x.narrow(0, start, rows), parts[0], parts[1], parts[2]).backward(out_grad.narrow(0, start, rows));
      }
      for (int k = 0; k < 3; ++k) got_halves[l][k] = ranks > 1 ? parts[k].grad() / static_cast<double>(ranks) : parts[k].grad();
    }
    // This layer's recorded gradients give the residual's (this output
    // gradient plus the post-attention norm's backward of the MLP's input
    // gradient); the attention's backward from it gives the output gradient
    // of the layer below and the attention weights' gradients (q, k, v, o:
    // their steps are judged from these as the MLP's are from theirs; FP8
    // products or dropped tiles in the attention's weight gradients show
    // there, attack passes 36 and 38), the whole batch's and its halves'.
    {
      auto r = residual.detach().requires_grad_(true);
      const auto g_residual =
          out_grad + torch::autograd::grad({layer.post_attention_layernorm(r)}, {r}, {in_grad})[0];
      auto& attention = *layer.self_attn;
      const std::vector<torch::Tensor> weights = {attention.q_proj->weight, attention.k_proj->weight,
                                                  attention.v_proj->weight, attention.o_proj->weight};
      std::vector<torch::Tensor> wrt = {hl};
      wrt.insert(wrt.end(), weights.begin(), weights.end());
      const auto g = torch::autograd::grad({attended}, wrt, {g_residual});
      if (l > 0) worst(step.layer_backward_error, below_grad, g[0]);
      const double share = 1.0 / static_cast<double>(ranks);  // each rank's output gradient is of its own share
      for (int k = 0; k < 4; ++k) got_attention[l][k] = ranks > 1 ? g[k + 1] * share : g[k + 1];
      if (B > 1) {
        std::array<torch::Tensor, 4> sum;  // accumulated in the weights' dtype, as .grad accumulates
        for (auto [start, rows] : halves_of(B)) {
          const auto part = h.narrow(0, start, rows).detach();
          const auto gp = torch::autograd::grad({layer.self_attn(layer.input_layernorm(part), cos, sin)}, weights,
                                                {g_residual.narrow(0, start, rows)});
          for (int k = 0; k < 4; ++k) sum[k] = sum[k].defined() ? sum[k] + gp[k] : gp[k];
        }
        for (int k = 0; k < 4; ++k) got_attention_halves[l][k] = ranks > 1 ? sum[k] * share : sum[k];
      }
      std::array<torch::Tensor, 4> wf;
      for (int k = 0; k < 4; ++k) wf[k] = weights[k].detach().to(torch::kFloat32).requires_grad_(true);
      const auto gf = torch::autograd::grad({attention_f32(layer, h, wf, cos, sin)}, {wf[0], wf[1], wf[2], wf[3]},
                                            {g_residual.to(torch::kFloat32)});
      for (int k = 0; k < 4; ++k) got_attention_f32[l][k] = (ranks > 1 ? gf[k] * share : gf[k]).to(dtype);
    }
    {
      torch::NoGradGuard no_grad;
      h = residual + out;  // the next layer's input
    }
    below_grad = out_grad;
  }
  // The loss head's input is the final norm of the last layer's output, and
  // the last layer's output gradient that norm's backward of its gradient.
  const auto head_in = load(head_inputs), head_grad = load(head_grads);
  {
    torch::NoGradGuard no_grad;
    worst(step.layer_forward_error, head_in, replay->model->norm(h));
  }
  auto hl = h.detach().requires_grad_(true);
  worst(step.layer_backward_error, below_grad, torch::autograd::grad({replay->model->norm(hl)}, {hl}, {head_grad})[0]);
  step.layer_small_terms = std::max(fwd.share(), bwd.share());
  step.layer_small_energy = std::max(fwd.energy(), bwd.energy());
  if (step.layer_rows_missing > 0) return;
  grads = std::move(got);
  halves = std::move(got_halves);
  small_grads = std::move(small);
  attention_grads = std::move(got_attention);
  attention_halves = std::move(got_attention_halves);
  attention_f32_grads = std::move(got_attention_f32);
}

}  // namespace

void Evaluator::check_replay_fits() const {
  if (trajectory_slots_ <= 0 || !cfg_.device.is_cuda()) return;
  // The replay's own parameters, the recorded state, AdamW's two moments and
  // the gradient: five copies of the parameter memory, made after the runner
  // is gone; and the working set of a checkpointed step and of the judging's
  // slices (about fifteen float32 temporaries of 2^26 elements).
  constexpr int64_t kWorkingSet = int64_t{12} << 30;
  // The layers' record adds the MLP weights' own moments, gradient and
  // halves' gradient: at most four more copies (the MLP is most of the parameters).
  const int64_t need = (cfg_.record_layers ? 9 : 5) * static_cast<int64_t>(layout_.bytes) + kWorkingSet;
  const int64_t have = compat::available_device_memory(cfg_.device);
  if (have >= need) return;
  auto gib = [](int64_t b) { return std::to_string(static_cast<int64_t>(std::ceil(b / double(int64_t{1} << 30)))); };
  throw UserInputError("the judge repeats every timed step on the card after the run, and for this model that needs "
                       "about " + gib(need) + " GiB beside the parameters; this card has " + gib(have) +
                       " GiB free. Evaluate on a card with more memory (Qwen2.5-7B: an H200), or free the card");
}

std::vector<RunOutcome::TrajectoryStep> Evaluator::trajectory_errors(const torch::Tensor& timed_tokens, uint64_t seed) {
  std::vector<RunOutcome::TrajectoryStep> steps;
  if (trajectory_slots_ <= 0) return steps;
  const auto bytes = static_cast<int64_t>(layout_.bytes);
  const auto device = cfg_.device;
  // The judge's own memory, for this run only (on CUDA the card is the next
  // run's once this returns): the replay's parameters, and each recorded
  // state, copied out of the shared region once. Nothing of that region is
  // read twice, so nothing can change between one read and the next.
  auto buffer = torch::empty({bytes}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
  auto recorded = torch::empty_like(buffer);  // the state recorded after the step being judged
  Qwen2ForCausalLM replay(cfg_.model, buffer_allocator(buffer, layout_, cfg_.dtype), cfg_.attention);
  replay->train();
  // A 7B step's activations would not fit beside the replay's state.
  if (device.is_cuda()) replay->set_checkpointed_layers(std::vector<bool>(cfg_.model.num_hidden_layers, true));
  std::vector<std::string> names;
  std::vector<torch::Tensor> mine;  // the replay's parameters, views of buffer
  for (auto& item : replay->named_parameters()) {
    names.push_back(item.key());
    mine.push_back(item.value());
  }
  // lm_head's place among them (-1: tied to the embedding, whose gradient has another part).
  const auto lm_at = std::find(names.begin(), names.end(), "lm_head.weight");
  const int64_t lm_head = lm_at == names.end() ? -1 : lm_at - names.begin();
  std::vector<size_t> at;  // each parameter's place in the layout
  for (const auto& name : names) {
    size_t k = 0;
    while (k < layout_.specs.size() && layout_.specs[k].name != name) ++k;
    TORCH_CHECK(k < layout_.specs.size(), "parameter layout has no ", name);
    at.push_back(k);
  }
  auto as_params = [&](const torch::Tensor& region_bytes) {  // a region's bytes as the model's parameters
    std::vector<torch::Tensor> out;
    auto base = static_cast<char*>(region_bytes.data_ptr());
    const auto options = torch::TensorOptions().dtype(cfg_.dtype).device(region_bytes.device());
    for (size_t i = 0; i < names.size(); ++i) {
      out.push_back(torch::from_blob(base + layout_.offsets[at[i]], layout_.specs[at[i]].shape, options));
    }
    return out;
  };
  auto slot = [&](int64_t t) {  // the weights recorded after step t + 1 (host)
    return trajectory_.view(static_cast<size_t>(t) * params_.size(), {bytes}, torch::kUInt8);
  };
  // The final weights: read where they are (their region is fingerprinted).
  const auto final_weights = as_params(params_.view(0, {bytes}, torch::kUInt8));
  const auto head_record = trajectory_.view(static_cast<size_t>(trajectory_slots_) * params_.size(),
                                            protocol::head_record_shape(cfg_.model, cfg_.batch_size, cfg_.seq_len, cfg_.steps),
                                            torch::kBFloat16);  // [2, steps, B, S, H]: inputs, gradients
  const auto recorded_weights = as_params(recorded);
  const int64_t B = cfg_.batch_size;
  // The layers' record (train_api.h, version 6), after the loss head's, where recorded.
  const auto layer_record =
      cfg_.record_layers ? trajectory_.view(static_cast<size_t>(trajectory_slots_) * params_.size() +
                                             protocol::head_record_bytes(cfg_.model, B, cfg_.seq_len, cfg_.steps),
                                         protocol::layer_record_shape(cfg_.model, B, cfg_.seq_len, cfg_.steps),
                                         torch::kBFloat16)
                      : torch::Tensor();  // [4, L, steps, B, S, H]: residuals, MLP outputs, their gradients
  // Each layer's MLP weights' places among the replay's parameters (gate, up, down).
  std::vector<std::array<size_t, 3>> mlp_at(cfg_.model.num_hidden_layers);
  for (size_t l = 0; l < mlp_at.size(); ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".mlp.";
    const char* which[3] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};
    for (int k = 0; k < 3; ++k) {
      const auto it = std::find(names.begin(), names.end(), prefix + which[k]);
      TORCH_CHECK(it != names.end(), "the replay has no ", prefix, which[k]);
      mlp_at[l][k] = static_cast<size_t>(it - names.begin());
    }
  }
  // And its attention weights' (q, k, v, o).
  std::vector<std::array<size_t, 4>> attention_at(cfg_.model.num_hidden_layers);
  for (size_t l = 0; l < attention_at.size(); ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".self_attn.";
    const char* which[4] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"};
    for (int k = 0; k < 4; ++k) {
      const auto it = std::find(names.begin(), names.end(), prefix + which[k]);
      TORCH_CHECK(it != names.end(), "the replay has no ", prefix, which[k]);
      attention_at[l][k] = static_cast<size_t>(it - names.begin());
    }
  }

  // AdamW as the contract states it (optim.h), tensor by tensor, with its own
  // moments from the judge's own gradients.
  std::vector<torch::Tensor> exp_avg, exp_avg_sq;
  for (const auto& p : mine) {
    exp_avg.push_back(torch::zeros_like(p));
    exp_avg_sq.push_back(torch::zeros_like(p));
  }
  // The MLP weights' steps judged from the record's gradients, with moments
  // of their own from those gradients (the run's own moments are its
  // gradients', which an honest run's record gives up to one layer's rounding).
  std::vector<torch::Tensor> record_avg(mine.size()), record_avg_sq(mine.size());
  // And the moments of the same gradients with each of their small-term
  // parts left out of every step (the moments a run that drops the part
  // keeps: most of a later step's shift comes from the earlier steps').
  std::vector<std::vector<torch::Tensor>> small_avg(mine.size()), small_avg_sq(mine.size());
  // Per part (kSmallGrads operand parts, then the product parts), the
  // elements whose run weight only the step without it gives, and those only
  // the judge's whole step gives, pooled over the MLP kinds, layers and read
  // steps so far (read_slice).
  std::vector<std::array<double, 2>> small_counts(kSmallGrads + kProductShares.size());
  if (layer_record.defined()) {
    for (const auto& layer : mlp_at) {
      for (size_t i : layer) {
        record_avg[i] = torch::zeros_like(mine[i]);
        record_avg_sq[i] = torch::zeros_like(mine[i]);
        for (size_t q = 0; q < kSmallGrads + kProductShares.size(); ++q) {
          small_avg[i].push_back(torch::zeros_like(mine[i]));
          small_avg_sq[i].push_back(torch::zeros_like(mine[i]));
        }
      }
    }
    for (const auto& layer : attention_at) {
      for (size_t i : layer) {
        record_avg[i] = torch::zeros_like(mine[i]);
        record_avg_sq[i] = torch::zeros_like(mine[i]);
      }
    }
  }
  for (int64_t t = 0; t < cfg_.steps; ++t) {
    RunOutcome::TrajectoryStep step;
    {
      torch::NoGradGuard no_grad;
      if (t == 0) {
        for (size_t i = 0; i < mine.size(); ++i) start_tensor(mine[i], names[i], i, seed);
      } else {
        buffer.copy_(recorded);
      }
      if (t + 1 < cfg_.steps) recorded.copy_(slot(t));
      step.recorded = true;
      for (const auto& p : mine) step.recorded = step.recorded && torch::isfinite(p).all().item<bool>();
    }
    if (!step.recorded) {  // nothing to judge this step from
      steps.push_back(std::move(step));
      continue;
    }
    const auto& target = t + 1 < cfg_.steps ? recorded_weights : final_weights;
    {
      // Whatever the gradients, AdamW moves an element by at most lr * reach
      // past its decay; the results round into bf16 (a spacing at each end,
      // which fp32 master weights would also take). A recorded state further
      // than that from the one before is none that training made: the
      // seventeenth attack pass recorded a final norm of 0, where lm_head's
      // gradient is 0 and its steps are known, to blind the check below.
      torch::NoGradGuard no_grad;
      const auto& o = cfg_.optimizer;
      const double limit = o.lr * adamw_reach(o, t + 1) * 1.02;  // 2%: moments rounded into bf16
      for (size_t i = 0; i < mine.size(); ++i) {
        each_slice(mine[i], [&](const Slice& part) {
          const auto s0 = part(mine[i]).to(torch::kFloat32), w = part(target[i]).to(torch::kFloat32);
          const auto allowed = limit + (bf16_spacing(w) + bf16_spacing(s0)) / 2 + 1e-6 * s0.abs();
          const auto moved = (w - s0 * (1.0 - o.lr * o.weight_decay)).abs();
          step.out_of_reach += (~(moved <= allowed)).sum().item<int64_t>();  // NaN counts as out of reach
        });
      }
    }
    const auto batch = timed_tokens.narrow(0, t * B, B).to(device);  // [B, S]
    // The batch's gradient as two halves' accumulated, an honest way to
    // compute it that differs only in rounding: how far such a difference
    // moves the step is part of the unit below. Kept on the card where the
    // whole batch's gradient, its backward and the judging's slices still fit
    // beside it (8 GiB for those two at the 7B shape's 16 x 1024: an H200,
    // not an 80 GB card), else on the host, at two trips over PCIe a step.
    std::vector<torch::Tensor> halves(mine.size());
    if (B > 1) {
      for (auto [start, rows] : halves_of(B)) {
        const auto part = batch.narrow(0, start, rows);  // [rows, S]
        (linear_cross_entropy(replay->hidden_states(part), replay->lm_head_weight(), part) * (double(rows) / B))
            .backward();
      }
      const bool on_card = !device.is_cuda() || compat::available_device_memory(device) > 2 * bytes + (int64_t{8} << 30);
      for (size_t i = 0; i < mine.size(); ++i) {
        if (mine[i].grad().defined()) {
          halves[i] = on_card ? mine[i].grad() : mine[i].grad().to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
        }
        mine[i].mutable_grad() = torch::Tensor();
      }
    }
    auto hidden = replay->hidden_states(batch);  // [B, S, H]
    auto head = judge_head_record(step, head_record[0][t], head_record[1][t], hidden, batch, replay->lm_head_weight(),
                                  ranks());
    linear_cross_entropy(hidden, replay->lm_head_weight(), batch).backward();
    hidden = torch::Tensor();
    if (lm_head >= 0 && head.full.defined()) {  // lm_head's step from the run's own recorded input (above)
      mine[lm_head].mutable_grad() = head.full;
      if (halves[lm_head].defined() && head.halves.defined()) halves[lm_head] = head.halves.to(halves[lm_head].device());
    }
    head = HeadWeightGrads{};
    // The layers' record: its readings, and the gradients the MLP's and the attention's weights' steps are judged from too.
    std::vector<torch::Tensor> record_grad(mine.size()), record_halves(mine.size()), record_f32(mine.size());
    std::vector<GradParts> record_small(mine.size());
    if (layer_record.defined()) {
      std::vector<std::array<torch::Tensor, 3>> grads, parts;
      std::vector<std::array<GradParts, 3>> small;
      std::vector<std::array<torch::Tensor, 4>> attention, attention_parts, attention_f32;
      judge_layer_record(step, layer_record, t, replay, batch, head_record[0][t], head_record[1][t], ranks(), grads,
                         parts, small, attention, attention_parts, attention_f32);
      for (size_t l = 0; l < grads.size(); ++l) {
        for (int k = 0; k < 3; ++k) {
          record_grad[mlp_at[l][k]] = grads[l][k];
          record_halves[mlp_at[l][k]] = parts[l][k];
          record_small[mlp_at[l][k]] = small[l][k];
        }
        for (int k = 0; k < 4; ++k) {
          record_grad[attention_at[l][k]] = attention[l][k];
          record_halves[attention_at[l][k]] = attention_parts[l][k];
          record_f32[attention_at[l][k]] = attention_f32[l][k];
        }
      }
    }
    torch::NoGradGuard no_grad;
    using Sums = std::map<std::string, std::pair<double, double>>;  // kind -> (the run's sum d^2, the unit's)
    Sums sums, record_sums;
    // One slice's reading: the step from p (whose moments are m, v) with
    // gradient g against the run's `target`, in the unit of the same step
    // with g moved by rounding-size noise, with the halves' gradient h and
    // with the float32-throughout gradient f (each where defined). The judge's
    // step lands in p, m and v.
    // Where `small` is given (the record's small-term parts of g and the
    // moments without them, sliced as g is), also reads the run's step
    // against the judge's without each part (into small_counts).
    struct SmallSlices {
      std::vector<torch::Tensor> part, avg, avg_sq;
      torch::Tensor where;  // the product parts' elements read (undefined: all)
    };
    auto read_slice = [&](torch::Tensor p, const torch::Tensor& g, const torch::Tensor& h, const torch::Tensor& f,
                          torch::Tensor m,
                          torch::Tensor v, const torch::Tensor& w, double sigma, at::Generator& gen,
                          std::pair<double, double>& sum, const SmallSlices& small,
                          std::vector<std::array<double, 2>>* fits) {
      // Elements with a history (v > 0 before the step). An element's first
      // step is lr times the sign of its gradient, so a gradient of rounding
      // size may flip it by 2 lr (the tuned example's first steps read 0.04 to
      // 0.07 of the step that way, its later ones under 0.011;
      // docs/measurements/2026-12-05-trajectory.md). Only they are read.
      const auto history = v > 0;
      const auto start = small.part.empty() ? torch::Tensor() : p.clone();
      const auto noisy = trial_step(p, noisy_gradient(g, sigma, gen), m, v, t + 1, cfg_.optimizer);
      const auto split = h.defined() ? trial_step(p, h, m, v, t + 1, cfg_.optimizer) : torch::Tensor();
      const auto other = f.defined() ? trial_step(p, f, m, v, t + 1, cfg_.optimizer) : torch::Tensor();
      torch::Tensor unrounded;
      adamw_unfused_step_(p, g, m, v, t + 1, cfg_.optimizer, &unrounded);
      const auto judged = p.to(torch::kFloat32);
      // How far an unrounded result (`centre`, rounding to `rounded`) would
      // have to move to round to x (past half the gap to x's bf16 neighbour
      // on its side); 0 where it rounds to x already. shortfall: the judge's.
      auto miss = [&](const torch::Tensor& x, const torch::Tensor& centre, const torch::Tensor& rounded) {
        return ((x - centre).abs() - half_gap(x, centre)).clamp_min(0).masked_fill(x == rounded, 0) * history;
      };
      auto shortfall = [&](const torch::Tensor& x) { return miss(x, unrounded, judged); };
      const auto own = shortfall(w);
      sum.first += own.pow(2).sum().item<double>();
      sum.second += shortfall(noisy).pow(2).sum().item<double>();
      if (split.defined()) sum.second += shortfall(split).pow(2).sum().item<double>();
      if (other.defined()) sum.second += shortfall(other).pow(2).sum().item<double>();
      if (small.part.empty()) return;
      // The judge's step from the gradient with each part left out, with the
      // moments of the gradients with it left out in every step so far (a
      // run that drops a part drops it from its moments too). Where the run's
      // weight is what exactly one of the two steps rounds to, it counts for
      // that step: a run that left the part out lands on the step without it
      // where the two differ, honest rounding mostly on the judge's. The
      // reading is the count for the step without the part over the count
      // for the judge's, pooled over the MLP kinds, layers and steps so far:
      // element counts, not the shortfall's energy, whose few largest
      // elements decided it (honest gradient accumulation read 2.45 on one
      // step where its pooled count reads 0.36). Read from the third step on:
      // the second's moments carry the unread first step's gradient at nearly
      // half the step's weight (docs/measurements/2026-12-06-small-terms.md).
      const bool read = t >= 2;
      const auto gf = g.to(torch::kFloat32);
      for (size_t q = 0; q < small.part.size(); ++q) {
        auto p2 = start.clone(), ma = small.avg[q], va = small.avg_sq[q];  // views: the moments land in them
        torch::Tensor without;
        adamw_unfused_step_(p2, gf - small.part[q], ma, va, t + 1, cfg_.optimizer, &without);
        if (!read) continue;
        const auto other = miss(w, without, p2.to(torch::kFloat32));
        auto nearer = (own > 0) & (other == 0), further = (own == 0) & (other > 0);
        if (q >= kSmallGrads && small.where.defined()) {  // a sample of columns: read there alone
          nearer = nearer & small.where;
          further = further & small.where;
        }
        (*fits)[q][0] += nearer.sum().item<double>();
        (*fits)[q][1] += further.sum().item<double>();
      }
    };
    for (size_t i = 0; i < mine.size(); ++i) {
      const auto grad = mine[i].grad();
      if (!grad.defined()) continue;  // as AdamW: a parameter without a gradient is not stepped
      const double sigma = noise_sigma(grad);
      auto gen = noise_generator(grad.device(), t + 1, seed, i);
      const bool from_record = record_grad[i].defined();
      const double record_sigma = from_record ? noise_sigma(record_grad[i]) : 0.0;
      auto record_gen = noise_generator(grad.device(), t + 1, seed, mine.size() + i);
      auto& s = sums[tensor_kind(names[i])];
      each_slice(mine[i], [&](const Slice& part) {  // views: the steps land in mine and the moments
        const auto w = part(target[i]).to(torch::kFloat32);
        if (from_record) {  // first: it starts from mine's slice as it is, on a copy
          SmallSlices small;
          const auto& parts = record_small[i].parts;
          if (record_small[i].where.defined()) small.where = part(record_small[i].where).to(w.device());
          for (size_t q = 0; q < parts.size(); ++q) {
            small.part.push_back(part(parts[q]).to(w.device()));
            small.avg.push_back(part(small_avg[i][q]));
            small.avg_sq.push_back(part(small_avg_sq[i][q]));
          }
          read_slice(part(mine[i]).clone(), part(record_grad[i]),
                     record_halves[i].defined() ? part(record_halves[i]) : torch::Tensor(),
                     record_f32[i].defined() ? part(record_f32[i]) : torch::Tensor(), part(record_avg[i]),
                     part(record_avg_sq[i]), w, record_sigma, record_gen, record_sums[tensor_kind(names[i])], small,
                     &small_counts);
        }
        read_slice(part(mine[i]), part(grad), halves[i].defined() ? part(halves[i]) : torch::Tensor(), torch::Tensor(),
                   part(exp_avg[i]), part(exp_avg_sq[i]), w, sigma, gen, s, {}, nullptr);
      });
      halves[i] = record_grad[i] = record_halves[i] = record_f32[i] = torch::Tensor();  // their memory is the next tensor's
      record_small[i] = GradParts{};
      mine[i].mutable_grad() = torch::Tensor();
    }
    auto excess = [](const Sums& by_kind, std::vector<std::pair<std::string, double>>& out) {
      for (const auto& [kind, s] : by_kind) {
        // No flip from the noise: any shortfall is infinitely many times it; NaN: not finite.
        const double e = s.second > 0 ? std::sqrt(s.first / s.second) : s.first > 0 ? INFINITY : 0.0;
        out.emplace_back(kind, std::isnan(e) ? INFINITY : e);
      }
    };
    excess(sums, step.kinds);
    excess(record_sums, step.record_kinds);
    for (const auto& [nearer, further] : small_counts) {
      const double ratio = further > 0 ? nearer / further : nearer > 0 ? INFINITY : 0.0;
      step.mlp_grad_small_terms = std::max(step.mlp_grad_small_terms, ratio);
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

}  // namespace tournament
