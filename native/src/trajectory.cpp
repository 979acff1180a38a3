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
// squares; over the same for the judge's own step taken again with its
// gradient moved by rounding-size noise (noisy_step). So 1 is as far as such
// noise lands, whatever the step and the tensor's scale; only elements with a
// history count (nothing of the first step). lm_head's is judged
// (head_trajectory_excess, CPU); the others are information: their honest
// spread against this noise differs by kind (the tuned example's attention
// weights read up to 14; docs/measurements/2026-12-05-trajectory.md).
#include <cmath>
#include <map>

#include <ATen/CPUGeneratorImpl.h>

#include "evaluator.h"

namespace tournament {

namespace {

// A model over the bytes of `buffer` (host, the parameter layout's).
ParamAllocator buffer_allocator(const torch::Tensor& buffer, const protocol::ParamLayout& layout, torch::Dtype dtype) {
  auto index = std::make_shared<std::map<std::string, size_t>>();
  for (size_t i = 0; i < layout.specs.size(); ++i) (*index)[layout.specs[i].name] = i;
  auto base = static_cast<char*>(buffer.data_ptr());
  return [base, &layout, dtype, index](const std::string& name, at::IntArrayRef shape) {
    const size_t i = index->at(name);
    TORCH_CHECK(shape.vec() == layout.specs[i].shape, "parameter layout: shape mismatch for ", name);
    return torch::from_blob(base + layout.offsets[i], shape, torch::TensorOptions().dtype(dtype));
  };
}

// The distance between neighbouring bf16 values at a (float32 holding bf16 values).
torch::Tensor bf16_spacing(const torch::Tensor& a) {
  return torch::ldexp(torch::ones_like(a), std::get<1>(torch::frexp(a)) - 8);
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

// The judge's step of parameter `index` (moments m, v before it; step counts
// from 1) with the gradient g moved by rounding-size noise: 2^-8 of g's RMS
// over the tensor times a normal draw, from a generator of (seed, step,
// index). Rounded into bf16 as the step's result would be; p, m and v are
// left as they were.
torch::Tensor noisy_step(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                         int64_t step, const OptimizerConfig& cfg, uint64_t seed, size_t index) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) * 4099 + index + 1)));
  const auto gf = g.to(torch::kFloat32);
  const double sigma = std::ldexp(gf.pow(2).mean().sqrt().item<double>(), -8);
  auto p2 = p.clone(), m2 = m.clone(), v2 = v.clone();
  adamw_unfused_step_(p2, gf + sigma * at::randn(gf.sizes(), gen), m2, v2, step, cfg);
  return p2.to(torch::kFloat32);
}

}  // namespace

std::vector<RunOutcome::TrajectoryStep> Evaluator::trajectory_errors(const torch::Tensor& timed_tokens, uint64_t seed) {
  std::vector<RunOutcome::TrajectoryStep> steps;
  if (trajectory_slots_ <= 0) return steps;
  const auto bytes = static_cast<int64_t>(layout_.bytes);
  if (!replay_) {
    replay_buffer_ = torch::zeros({bytes}, torch::kUInt8);
    replay_ = Qwen2ForCausalLM(cfg_.model, buffer_allocator(replay_buffer_, layout_, cfg_.dtype), cfg_.attention);
    replay_->train();
  }
  std::vector<std::string> names;
  std::vector<torch::Tensor> mine;  // the replay's parameters, views of replay_buffer_
  for (auto& item : replay_->named_parameters()) {
    names.push_back(item.key());
    mine.push_back(item.value());
  }
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
    for (size_t i = 0; i < names.size(); ++i) {
      out.push_back(torch::from_blob(base + layout_.offsets[at[i]], layout_.specs[at[i]].shape,
                                     torch::TensorOptions().dtype(cfg_.dtype)));
    }
    return out;
  };
  auto slot = [&](int64_t t) {  // the weights recorded after step t + 1
    return trajectory_.view(static_cast<size_t>(t) * params_.size(), {bytes}, torch::kUInt8);
  };
  const auto final_bytes = params_.view(0, {bytes}, torch::kUInt8).to(torch::kCPU);
  const int64_t B = cfg_.batch_size;

  // AdamW as the contract states it (optim.h), tensor by tensor, with its own
  // moments from the judge's own gradients, keeping each result unrounded.
  std::vector<torch::Tensor> exp_avg, exp_avg_sq, unrounded(mine.size());
  for (const auto& p : mine) {
    exp_avg.push_back(torch::zeros_like(p));
    exp_avg_sq.push_back(torch::zeros_like(p));
  }
  for (int64_t t = 0; t < cfg_.steps; ++t) {
    RunOutcome::TrajectoryStep step;
    {
      torch::NoGradGuard no_grad;
      if (t == 0) {
        for (size_t i = 0; i < mine.size(); ++i) start_tensor(mine[i], names[i], i, seed);
      } else {
        replay_buffer_.copy_(slot(t - 1));
      }
      step.recorded = true;
      for (const auto& p : mine) step.recorded = step.recorded && torch::isfinite(p).all().item<bool>();
    }
    if (!step.recorded) {  // nothing to judge this step from
      steps.push_back(std::move(step));
      continue;
    }
    const auto target = as_params(t + 1 < cfg_.steps ? slot(t) : final_bytes);
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
        const auto s0 = mine[i].to(torch::kFloat32), w = target[i].to(torch::kFloat32);
        const auto allowed = limit + (bf16_spacing(w) + bf16_spacing(s0)) / 2 + 1e-6 * s0.abs();
        const auto moved = (w - s0 * (1.0 - o.lr * o.weight_decay)).abs();
        step.out_of_reach += (~(moved <= allowed)).sum().item<int64_t>();  // NaN counts as out of reach
      }
    }
    const auto batch = timed_tokens.narrow(0, t * B, B).to(torch::kCPU);  // [B, S]
    auto hidden = replay_->hidden_states(batch);                         // [B, S, H]
    linear_cross_entropy(hidden, replay_->lm_head_weight(), batch).backward();
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads(mine.size()), history(mine.size()), noisy(mine.size());
    for (size_t i = 0; i < mine.size(); ++i) {
      grads[i] = mine[i].grad();
      if (!grads[i].defined()) {  // as AdamW: a parameter without a gradient is not stepped
        unrounded[i] = mine[i].to(torch::kFloat32);
        continue;
      }
      // Elements with a history (v > 0 before the step). An element's first
      // step is lr times the sign of its gradient, so a gradient of rounding
      // size may flip it by 2 lr (the tuned example's first steps read 0.04 to
      // 0.07 of the step that way, its later ones under 0.011;
      // docs/measurements/2026-12-05-trajectory.md). Only they are read.
      history[i] = exp_avg_sq[i] > 0;
      noisy[i] = noisy_step(mine[i], grads[i], exp_avg[i], exp_avg_sq[i], t + 1, cfg_.optimizer, seed, i);
      adamw_unfused_step_(mine[i], grads[i], exp_avg[i], exp_avg_sq[i], t + 1, cfg_.optimizer, &unrounded[i]);
      mine[i].mutable_grad() = torch::Tensor();
    }

    std::map<std::string, std::pair<double, double>> sums;  // kind -> (the run's sum d^2, the noisy step's)
    for (size_t i = 0; i < mine.size(); ++i) {
      if (!grads[i].defined()) continue;
      const auto judged = mine[i].to(torch::kFloat32);
      // How far the judge's unrounded result would have to move to round to
      // w (past half of w's bf16 spacing); 0 where it rounds to w already.
      auto shortfall = [&](const torch::Tensor& w) {
        return ((w - unrounded[i]).abs() - bf16_spacing(w) / 2).clamp_min(0).masked_fill(w == judged, 0) * history[i];
      };
      auto& s = sums[tensor_kind(names[i])];
      s.first += shortfall(target[i].to(torch::kFloat32)).pow(2).sum().item<double>();
      s.second += shortfall(noisy[i]).pow(2).sum().item<double>();
    }
    for (const auto& [kind, s] : sums) {
      // No flip from the noise: any shortfall is infinitely many times it; NaN: not finite.
      const double e = s.second > 0 ? std::sqrt(s.first / s.second) : s.first > 0 ? INFINITY : 0.0;
      step.kinds.emplace_back(kind, std::isnan(e) ? INFINITY : e);
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

}  // namespace tournament
