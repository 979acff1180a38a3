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
  // [steps, batch, S, H] bf16 (host), shared by every rank, row r of a
  // step's being row r of that step's batch; this rank writes its own share's
  // rows only. The layers' record (version 6): `layers` [4, layers, steps,
  // batch, S, H] bf16 (host): residuals after the attention, MLP outputs,
  // MLP output gradients, MLP input gradients, laid out alike, or undefined
  // where it is not recorded. Without them (warmup) nothing is recorded.
  void record_heads_into(torch::Tensor inputs, torch::Tensor grads, torch::Tensor layers = {}) {
    head_inputs_ = std::move(inputs);
    head_grads_ = std::move(grads);
    layers_ = std::move(layers);
  }
  void record_loss_head(const torch::Tensor& input_ids, const torch::Tensor& hidden,
                        const torch::Tensor& hidden_grad) override {
    static const char* who = "data.record_loss_head()";
    if (!head_inputs_.defined()) return;
    const auto where = locate_rows(input_ids, true, who);
    check_shape(hidden, input_ids, who, "hidden");
    check_shape(hidden_grad, input_ids, who, "hidden_grad");
    copy_rows(head_inputs_, where, hidden);
    copy_rows(head_grads_, where, hidden_grad);
  }
  void record_layer(int64_t layer, const torch::Tensor& input_ids, const torch::Tensor& residual,
                    const torch::Tensor& mlp_output) override {
    static const char* who = "data.record_layer()";
    if (!layers_.defined()) return;
    check_layer(layer, who);
    const auto where = locate_rows(input_ids, true, who);
    check_shape(residual, input_ids, who, "residual");
    check_shape(mlp_output, input_ids, who, "mlp_output");
    record_layer_at(layer, where, residual, mlp_output);
  }
  void record_layer_grad(int64_t layer, const torch::Tensor& input_ids, const torch::Tensor& mlp_output_grad,
                         const torch::Tensor& mlp_input_grad) override {
    static const char* who = "data.record_layer_grad()";
    if (!layers_.defined()) return;
    check_layer(layer, who);
    const auto where = locate_rows(input_ids, true, who);
    check_shape(mlp_output_grad, input_ids, who, "mlp_output_grad");
    check_shape(mlp_input_grad, input_ids, who, "mlp_input_grad");
    record_mlp_output_grad_at(layer, where, mlp_output_grad);
    record_mlp_input_grad_at(layer, where, mlp_input_grad);
  }

  // The engine's own record (head_record.h): what the model's layers and
  // hidden_states report, at rows matched as the plugin's calls match them.
  Rows locate(const torch::Tensor& input_ids) override {
    return head_inputs_.defined() ? locate_rows(input_ids, false, "") : Rows{};
  }
  void record_head_at(const Rows& where, const torch::Tensor& hidden) override {
    if (!where.from.empty()) copy_rows(head_inputs_, where, hidden);
  }
  void record_head_grad_at(const Rows& where, const torch::Tensor& hidden_grad) override {
    if (!where.from.empty()) copy_rows(head_grads_, where, hidden_grad);
  }
  void record_layer_at(int64_t layer, const Rows& where, const torch::Tensor& residual,
                       const torch::Tensor& mlp_output) override {
    if (!layers_.defined() || where.from.empty()) return;
    copy_rows(layers_[0][layer], where, residual);
    copy_rows(layers_[1][layer], where, mlp_output);
  }
  void record_mlp_output_grad_at(int64_t layer, const Rows& where, const torch::Tensor& grad) override {
    if (layers_.defined() && !where.from.empty()) copy_rows(layers_[2][layer], where, grad);
  }
  void record_mlp_input_grad_at(int64_t layer, const Rows& where, const torch::Tensor& grad) override {
    if (layers_.defined() && !where.from.empty()) copy_rows(layers_[3][layer], where, grad);
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
  // Each row goes to the step whose batch holds it (the current one, by
  // step_done()'s count, where it does): records are matched by content, so
  // the order of the plugin's calls does not matter. `strict` (the plugin's
  // calls): ids of the wrong shape, or a row that is no batch row, throw
  // (naming `who`); else they are left out.
  Rows locate_rows(const torch::Tensor& input_ids, bool strict, const char* who) {
    Rows where;
    const int64_t S = tokens_.size(1);
    if (input_ids.dim() != 2 || input_ids.size(1) != S) {
      if (!strict) return where;
      throw std::runtime_error(std::string(who) + ": input_ids must be [rows, " + std::to_string(S) + "] (train_api.h)");
    }
    const auto ids = input_ids.to(torch::kCPU, torch::kInt64);  // [n, S]
    const int64_t current = std::min(steps_done_, steps_ - 1);
    for (int64_t i = 0; i < ids.size(0); ++i) {
      int64_t step = current;  // the current step first, then every other in order
      torch::Tensor match;     // [m, 1]: the rows of the step's batch (this rank's share) equal to ids[i]
      for (int64_t k = 0; k <= steps_; ++k) {
        step = k == 0 ? current : k - 1;
        if (k > 0 && step == current) continue;
        match = (tokens_.narrow(0, step * batch_ + first_, rows_) == ids[i]).all(1).nonzero();
        if (match.size(0) > 0) break;
      }
      if (match.size(0) == 0) {
        if (!strict) continue;
        throw std::runtime_error(std::string(who) + ": row " + std::to_string(i) +
                                 " of input_ids is no row of any timed batch (train_api.h)");
      }
      // Every equal row of that batch: rows of equal tokens have the same
      // records (each row sees its own row only), so a batch that holds a
      // row twice is recorded whole.
      for (int64_t m = 0; m < match.size(0); ++m) {
        where.from.push_back(i);
        where.step.push_back(step);
        where.row.push_back(first_ + match[m][0].item<int64_t>());
      }
    }
    return where;
  }
  // t must be [rows of input_ids, S, H].
  void check_shape(const torch::Tensor& t, const torch::Tensor& input_ids, const char* who, const char* what) const {
    const int64_t S = tokens_.size(1), H = head_inputs_.size(3);
    if (!t.defined() || t.dim() != 3 || t.size(0) != input_ids.size(0) || t.size(1) != S || t.size(2) != H) {
      throw std::runtime_error(std::string(who) + ": " + what + " must be [rows, " + std::to_string(S) + ", " +
                               std::to_string(H) + "], input_ids' rows (train_api.h)");
    }
  }
  void check_layer(int64_t layer, const char* who) const {
    if (layer < 0 || layer >= layers_.size(1)) {
      throw std::runtime_error(std::string(who) + ": layer " + std::to_string(layer) + " is not 0 to " +
                               std::to_string(layers_.size(1) - 1) + " (train_api.h)");
    }
  }
  // t's rows where.from into `into` [steps, B, S, H] (host) at (where.step,
  // where.row): from the card on the side stream, beside its work (the next
  // step_done() and DONE wait for them), so the record costs the run no stall.
  // On the card, from a copy of t made on the current stream (117 MB at the
  // 7B shape): t as the current stream sees it at this call, even where the
  // plugin writes into t's memory before the side copy has run. On the CPU the
  // copy into `into` is made at once, so t is read directly.
  void copy_rows(const torch::Tensor& into, const Rows& where, const torch::Tensor& t) {
    const auto rows = t.detach().to(into.scalar_type(), /*non_blocking=*/false, /*copy=*/t.is_cuda());  // [n, S, H], where t is
    for (size_t k = 0; k < where.from.size(); ++k) copy_.start(into[where.step[k]][where.row[k]], rows[where.from[k]]);
  }

  torch::Tensor params_, trajectory_, head_inputs_, head_grads_, layers_;
  compat::SideCopy copy_;
  int64_t steps_done_ = 0;
  bool deferred_ = false, waited_ = true;
};

}  // namespace tournament
