// The data iterator the engine hands to inner_steps: consecutive batches of a
// token table the trusted side chose. The submission sees only what next()
// gives it, so the number of tokens trained on holds by construction.
#pragma once

#define TOURNAMENT_HOST
#include <tournament/train_api.h>

#include <stdexcept>

#include "compat.h"

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
        device_(device),
        copy_(device) {}

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

  // step_done() copies `params` (the parameter memory's bytes, on the
  // device) into the next slot of `trajectory` [steps - 1, params bytes]
  // (host) until every slot is written (compat::SideCopy: beside the card's
  // work on CUDA). Without a trajectory (warmup) it records nothing; the
  // order wait_recorded() asks for is enforced all the same (train_api.h).
  void record_into(torch::Tensor params, torch::Tensor trajectory) {
    params_ = std::move(params);
    trajectory_ = std::move(trajectory);
  }
  void wait_recorded() override {
    if (steps_done_ == 0) deferred_ = true;
    copy_.wait();
    waited_ = true;
  }
  void step_done() override {
    if (deferred_ && steps_done_ > 0 && !waited_) {
      throw std::runtime_error(
          "data.step_done() without data.wait_recorded() since the step before: a plugin that calls "
          "wait_recorded() before its first optimizer step must call it before every one (train_api.h)");
    }
    const int64_t slot = steps_done_++;  // the weights after step slot + 1
    waited_ = false;
    if (!trajectory_.defined() || slot >= trajectory_.size(0)) return;
    copy_.start(trajectory_[slot], params_);
    if (!deferred_) copy_.wait();
  }
  // Once inner_steps has returned: the current stream's later work (the
  // logits' copy, which the runner waits for before DONE) waits for the
  // last record too, whatever the plugin did.
  void settle() { copy_.wait(); }

 private:
  torch::Tensor tokens_;
  int64_t steps_, batch_, rows_, first_;
  torch::Device device_;
  int64_t served_ = 0;
  torch::Tensor params_, trajectory_;
  compat::SideCopy copy_;
  int64_t steps_done_ = 0;
  bool deferred_ = false, waited_ = true;
};

}  // namespace tournament
