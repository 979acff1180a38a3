// The data iterator the engine hands to inner_steps: batches picked by index
// from a token table the trusted side chose. The submission sees only what
// next() gives it, so the number of tokens trained on holds by construction.
#pragma once

#define TOURNAMENT_HOST
#include <tournament/train_api.h>

#include <functional>

namespace tournament {

class IndexedBatches : public DataIterator {
 public:
  // tokens [samples, seq_len] int64 anywhere; indices [steps * batch] on the
  // tokens' device; batches are served on `device`.
  IndexedBatches(torch::Tensor tokens, torch::Tensor indices, int64_t batch_size, torch::Device device,
                 std::function<void(int64_t)> on_batch = nullptr)
      : tokens_(std::move(tokens)), indices_(std::move(indices)), batch_(batch_size), device_(device),
        on_batch_(std::move(on_batch)) {
    TORCH_CHECK(indices_.numel() % batch_ == 0, "batch indices do not divide into batches of ", batch_);
  }

  bool next(torch::Tensor* batch) override {
    if (served_ * batch_ >= indices_.numel()) return false;
    *batch = tokens_.index_select(0, indices_.narrow(0, served_ * batch_, batch_)).to(device_);  // [B, S]
    ++served_;
    if (on_batch_) on_batch_(served_);
    return true;
  }
  int64_t batch_size() const override { return batch_; }
  int64_t seq_len() const override { return tokens_.size(1); }
  int64_t served() const { return served_; }

 private:
  torch::Tensor tokens_, indices_;
  int64_t batch_;
  torch::Device device_;
  int64_t served_ = 0;
  std::function<void(int64_t)> on_batch_;
};

}  // namespace tournament
