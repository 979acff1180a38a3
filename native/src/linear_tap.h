// The judge's view into every linear layer of the model (the evaluator's
// position checks, position_checks.cpp): while a tap is set on a thread, each
// Linear's forward on that thread hands the tap its input and output, and the
// MLP runs as its three Linears (same forward ops) so that each is seen. The
// runner never sets one: a plugin that did would only watch its own process.
#pragma once

#include <tournament/model.h>

#include <functional>

namespace tournament {

// (layer, input [..., in], output [..., out]): called once per forward of `layer`.
using LinearTap = std::function<void(const LinearImpl& layer, const torch::Tensor& x, const torch::Tensor& y)>;

// The tap of this thread, or null.
const LinearTap* current_linear_tap();

// Sets `tap` on this thread for the scope's life; the previous one comes back after.
class ScopedLinearTap {
 public:
  explicit ScopedLinearTap(const LinearTap& tap);
  ~ScopedLinearTap();
  ScopedLinearTap(const ScopedLinearTap&) = delete;
  ScopedLinearTap& operator=(const ScopedLinearTap&) = delete;

 private:
  const LinearTap* previous_;
};

}  // namespace tournament
