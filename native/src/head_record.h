// Where model->hidden_states reports the loss head's input and gradient
// (train_api.h, version 5, record_loss_head): the runner points it at the
// timed call's data iterator; elsewhere (warmup, the judge's own replay) it
// is null and nothing is recorded.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace tournament {

class HeadRecorder {
 public:
  virtual ~HeadRecorder() = default;
  // Records `hidden`'s rows ([n, S, H]) as the loss head's input of the
  // batch rows `input_ids` ([n, S]) names, each in the step whose batch holds
  // it; returns where each went. `strict` (data.record_loss_head): a row that
  // is no batch row throws; else (the hook) it is left unrecorded.
  struct Rows {
    std::vector<int64_t> from, step, row;  // ids' row, and the step and batch row it was recorded as
  };
  virtual Rows record_input(const torch::Tensor& input_ids, const torch::Tensor& hidden, bool strict) = 0;
  // Records the gradient of those rows (when backward reaches them).
  virtual void record_grad(const Rows& where, const torch::Tensor& hidden_grad) = 0;
};

void set_head_recorder(HeadRecorder* recorder);
HeadRecorder* head_recorder();

}  // namespace tournament
