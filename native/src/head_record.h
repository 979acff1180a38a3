// Where the engine's model reports what the runner records in a timed call
// (train_api.h): the loss head's input and gradient (version 5) and each
// layer's residual after the attention, MLP output and the gradients of the
// MLP's output and input (version 6). The runner
// points it at the timed call's data iterator; elsewhere (warmup, the
// judge's own replay) it is null and nothing is recorded.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace tournament {

class HeadRecorder {
 public:
  virtual ~HeadRecorder() = default;
  // The batch rows input_ids ([n, S]) names, each in the step whose batch
  // holds it: ids' row `from` recorded as `row` of step `step`. Rows that are
  // no batch row are left out (the automatic record skips them).
  struct Rows {
    std::vector<int64_t> from, step, row;
  };
  virtual Rows locate(const torch::Tensor& input_ids) = 0;
  // The loss head's input hidden [n, S, H] at those rows, and its gradient.
  virtual void record_head_at(const Rows& where, const torch::Tensor& hidden) = 0;
  virtual void record_head_grad_at(const Rows& where, const torch::Tensor& hidden_grad) = 0;
  // Layer `layer`'s residual after the attention and MLP output [n, S, H] at
  // those rows, and the gradients of the MLP's output and input.
  virtual void record_layer_at(int64_t layer, const Rows& where, const torch::Tensor& residual,
                               const torch::Tensor& mlp_output) = 0;
  virtual void record_mlp_output_grad_at(int64_t layer, const Rows& where, const torch::Tensor& grad) = 0;
  virtual void record_mlp_input_grad_at(int64_t layer, const Rows& where, const torch::Tensor& grad) = 0;
};

void set_head_recorder(HeadRecorder* recorder);
HeadRecorder* head_recorder();

}  // namespace tournament
