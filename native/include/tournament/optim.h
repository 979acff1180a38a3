// AdamW exactly as PyTorch applies it to bf16 parameters (torch.optim.AdamW,
// fused=True on CUDA): state tensors (exp_avg, exp_avg_sq) in the parameter's
// dtype, the update computed in float32 and rounded once into the parameter.
// Where the build has no fused kernel (CPU, libtorch 1.x) the same arithmetic
// runs tensor by tensor. This is the numerics every submission is held to.
#pragma once

#include <tournament/libtorch.h>

#include <vector>

namespace tournament {

struct OptimizerConfig {
  double lr = 1e-4;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
};

// One AdamW update of one tensor (step counts from 1) in float32 tensor ops:
// the fused kernel's arithmetic, one rounding into each stored tensor. What
// AdamW::step runs where no fused kernel exists. `unrounded`, when given,
// receives the new parameter in float32 before its rounding into p.
void adamw_unfused_step_(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v, int64_t step,
                         const OptimizerConfig& cfg, torch::Tensor* unrounded = nullptr);

class AdamW {
 public:
  AdamW(std::vector<torch::Tensor> params, OptimizerConfig cfg);
  // Applies one update from the parameters' .grad(); parameters without a
  // gradient are skipped, as PyTorch does.
  void step();
  // Drops gradients (sets them undefined), as zero_grad(set_to_none=True).
  void zero_grad();
  int64_t steps_taken() const { return step_; }

 private:
  std::vector<torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  bool fused_ = false;                       // one fused kernel updates every tensor (compat.h)
  std::vector<torch::Tensor> step_tensors_;  // fused only: the kernel wants float32 step counts
  OptimizerConfig cfg_;
  int64_t step_ = 0;
};

}  // namespace tournament
