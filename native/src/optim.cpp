#include <tournament/optim.h>

#include <cmath>

#include "compat.h"

namespace tournament {

void adamw_unfused_step_(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v, int64_t step,
                         const OptimizerConfig& cfg, torch::Tensor* unrounded) {
  torch::NoGradGuard no_grad;
  const double lr = cfg.lr, b1 = cfg.beta1, b2 = cfg.beta2, wd = cfg.weight_decay, eps = cfg.eps;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step)));
  auto pf = p.to(torch::kFloat32);
  auto gf = g.to(torch::kFloat32);
  auto mf = m.to(torch::kFloat32);
  auto vf = v.to(torch::kFloat32);
  pf.mul_(1.0 - lr * wd);
  mf.mul_(b1).add_(gf, 1.0 - b1);
  vf.mul_(b2).addcmul_(gf, gf, 1.0 - b2);
  auto denom = vf.sqrt().div_(bc2_sqrt).add_(eps);
  pf.addcdiv_(mf, denom, -lr / bc1);
  if (unrounded) *unrounded = pf;
  p.copy_(pf);
  m.copy_(mf);
  v.copy_(vf);
}

AdamW::AdamW(std::vector<torch::Tensor> params, OptimizerConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  torch::NoGradGuard no_grad;
  fused_ = !params_.empty() && compat::has_fused_adamw(params_[0].device());
  for (auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    if (fused_) step_tensors_.push_back(torch::zeros({}, p.options().dtype(torch::kFloat32)));
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void AdamW::step() {
  torch::NoGradGuard no_grad;
  ++step_;
  const double lr = cfg_.lr, b1 = cfg_.beta1, b2 = cfg_.beta2, wd = cfg_.weight_decay, eps = cfg_.eps;

  std::vector<torch::Tensor> p, g, m, v, s;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    p.push_back(params_[i]);
    g.push_back(params_[i].grad());
    m.push_back(exp_avg_[i]);
    v.push_back(exp_avg_sq_[i]);
    if (fused_) s.push_back(step_tensors_[i]);
  }
  if (p.empty()) return;

  if (fused_) {
    at::_foreach_add_(s, 1);
    compat::fused_adamw(p, g, m, v, s, lr, b1, b2, wd, eps);
    return;
  }
  for (size_t i = 0; i < p.size(); ++i) adamw_unfused_step_(p[i], g[i], m[i], v[i], step_, cfg_);
}

}  // namespace tournament
