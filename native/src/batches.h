// The data iterator the engine hands to inner_steps: consecutive batches of a
// token table the trusted side chose. The submission sees only what next()
// gives it, so the number of tokens trained on holds by construction.
#pragma once

#define TOURNAMENT_HOST
#include <tournament/train_api.h>

namespace tournament {

class TableBatches : public DataIterator {
 public:
  // tokens [rows, seq_len] int64 anywhere, rows >= steps * batch; serves its
  // first `steps` batches of `batch_size` rows, in order, on `device`. Rank
  // `rank` of `ranks` gets its contiguous share of each batch: rows
  // [rank * batch / ranks, (rank + 1) * batch / ranks) (ranks divides batch).
  TableBatches(torch::Tensor tokens, int64_t steps, int64_t batch_size, torch::Device device, int64_t rank = 0,
               int64_t ranks = 1)
      : tokens_(std::move(tokens)),
        steps_(steps),
        batch_(batch_size),
        rows_(batch_size / ranks),
        first_(rank * (batch_size / ranks)),
        device_(device) {}

  bool next(torch::Tensor* batch) override {
    if (served_ >= steps_) return false;
    // A copy even on the CPU: a batch never aliases the shared token memory.
    *batch = tokens_.narrow(0, served_ * batch_ + first_, rows_)
                 .to(device_, /*non_blocking=*/false, /*copy=*/true);  // [B / ranks, S]
    ++served_;
    return true;
  }
  int64_t batch_size() const override { return rows_; }
  int64_t seq_len() const override { return tokens_.size(1); }

  // step_done() copies `params` (the parameter memory's bytes, host) into the
  // next slot of `trajectory` [steps - 1, params bytes] (host) until every
  // slot is written. Without a trajectory (warmup; CUDA for now) it records nothing.
  void record_into(torch::Tensor params, torch::Tensor trajectory) {
    params_ = std::move(params);
    trajectory_ = std::move(trajectory);
  }
  void step_done() override {
    if (!trajectory_.defined() || recorded_ >= trajectory_.size(0)) return;
    trajectory_[recorded_++].copy_(params_);
  }

 private:
  torch::Tensor tokens_;
  int64_t steps_, batch_, rows_, first_;
  torch::Device device_;
  int64_t served_ = 0;
  torch::Tensor params_, trajectory_;
  int64_t recorded_ = 0;
};

}  // namespace tournament
