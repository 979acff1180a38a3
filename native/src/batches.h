// The data iterator the engine hands to inner_steps: consecutive batches of a
// token table the trusted side chose. The submission sees only what next()
// gives it, so the number of tokens trained on holds by construction.
#pragma once

#define TOURNAMENT_HOST
#include <tournament/train_api.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "compat.h"
#include "head_record.h"

namespace tournament {

class TableBatches : public DataIterator, public HeadRecorder {
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
  // The loss head's record (train_api.h, version 5): `inputs` and `grads`
  // [steps, batch / ranks, S, H] bf16 (host), row r of a step's being row r
  // of this rank's share of that step's batch. Without them (warmup)
  // record_loss_head records nothing.
  void record_heads_into(torch::Tensor inputs, torch::Tensor grads) {
    head_inputs_ = std::move(inputs);
    head_grads_ = std::move(grads);
  }
  void record_loss_head(const torch::Tensor& input_ids, const torch::Tensor& hidden,
                        const torch::Tensor& hidden_grad) override {
    record_grad(record_input(input_ids, hidden), hidden_grad);
  }
  // The step is the one whose batch holds the rows (the current one, by
  // step_done()'s count, where it does): records are matched by content, so
  // the order of the plugin's calls does not matter.
  Rows record_input(const torch::Tensor& input_ids, const torch::Tensor& hidden) override {
    Rows where{-1, {}};
    if (!head_inputs_.defined()) return where;
    const auto ids = input_ids.to(torch::kCPU, torch::kInt64);  // [n, S]
    if (ids.dim() != 2 || ids.size(0) == 0 || ids.size(1) != tokens_.size(1) || hidden.dim() != 3 ||
        hidden.size(0) != ids.size(0) || hidden.size(1) != ids.size(1) || hidden.size(2) != head_inputs_.size(3)) {
      throw std::runtime_error("data.record_loss_head(): input_ids must be [rows, seq_len] and hidden [rows, seq_len, " +
                               std::to_string(head_inputs_.size(3)) + "] (train_api.h)");
    }
    auto batch = [&](int64_t step) { return tokens_.narrow(0, step * batch_ + first_, rows_); };  // [rows, S]
    auto row_of = [&](int64_t step, const torch::Tensor& row) {  // -1: none
      const auto match = (batch(step) == row).all(1).nonzero();     // [m, 1]
      return match.size(0) > 0 ? match[0][0].item<int64_t>() : int64_t{-1};
    };
    where.step = std::min(steps_done_, steps_ - 1);
    if (row_of(where.step, ids[0]) < 0) {
      where.step = -1;
      for (int64_t t = 0; t < steps_ && where.step < 0; ++t) {
        if (row_of(t, ids[0]) >= 0) where.step = t;
      }
    }
    for (int64_t i = 0; i < ids.size(0); ++i) {
      const int64_t r = where.step < 0 ? -1 : row_of(where.step, ids[i]);
      if (r < 0) {
        throw std::runtime_error("data.record_loss_head(): row " + std::to_string(i) +
                                 " of input_ids is no row of the batch of the step its first row belongs to "
                                 "(one call, one step's rows; train_api.h)");
      }
      where.rows.push_back(r);
    }
    copy_rows(head_inputs_[where.step], where.rows, hidden);
    return where;
  }
  void record_grad(const Rows& where, const torch::Tensor& hidden_grad) override {
    if (!head_grads_.defined() || where.step < 0) return;
    if (hidden_grad.dim() != 3 || hidden_grad.size(0) != static_cast<int64_t>(where.rows.size()) ||
        hidden_grad.size(2) != head_grads_.size(3)) {
      throw std::runtime_error("data.record_loss_head(): hidden_grad must have hidden's shape (train_api.h)");
    }
    copy_rows(head_grads_[where.step], where.rows, hidden_grad);
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
  static void copy_rows(const torch::Tensor& into, const std::vector<int64_t>& rows, const torch::Tensor& t) {
    into.index_copy_(0, torch::tensor(rows, torch::kInt64),
                     t.detach().to(torch::kCPU, into.scalar_type()).reshape({-1, into.size(1), into.size(2)}));
  }

  torch::Tensor params_, trajectory_, head_inputs_, head_grads_;
  compat::SideCopy copy_;
  int64_t steps_done_ = 0;
  bool deferred_ = false, waited_ = true;
};

}  // namespace tournament
