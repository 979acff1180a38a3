// Native tests of the data iterator's loss-head record (native/src/batches.h,
// train_api.h version 5), run by test/native.test.ts: rows are matched to
// their batch by their tokens, every copy of a row a batch holds twice is
// recorded, and the record is what the tensors held at the call, not later.
// Exit status 0 when every check holds; each failure prints a line.
#include "../src/batches.h"
#include "check.h"

using tournament::testing::check;

int main() {
  // 2 steps of 4 rows of 3 tokens; step 1's rows 1 and 3 are equal.
  auto tokens = torch::arange(24, torch::kInt64).view({8, 3});  // [8, 3]
  tokens[7] = tokens[5].clone();
  const int64_t H = 2;
  tournament::TableBatches data(tokens, 2, 4, torch::kCPU);
  auto inputs = torch::full({2, 4, 3, H}, NAN, torch::kBFloat16);  // [steps, B, S, H]
  auto grads = torch::full({2, 4, 3, H}, NAN, torch::kBFloat16);
  data.record_heads_into(inputs, grads);

  torch::Tensor batch;
  data.next(&batch);
  data.step_done();
  data.next(&batch);  // step 1: rows 4 to 7 of the table
  auto hidden = torch::full({2, 3, H}, 1.0);  // [rows, S, H]: the step's rows 0 and 1 (table rows 4 and 5)
  hidden[1].fill_(2.0);
  auto grad = torch::full({2, 3, H}, 3.0);
  data.record_loss_head(tokens.narrow(0, 4, 2), hidden, grad);
  hidden.fill_(-5.0);  // written after the call: not in the record
  grad.fill_(-5.0);

  check(inputs[1][0].eq(1.0).all().item<bool>(), "a row is recorded in its own step at its own place");
  check(inputs[1][1].eq(2.0).all().item<bool>() && inputs[1][3].eq(2.0).all().item<bool>(),
        "a row the batch holds twice is recorded in both places");
  check(grads[1][3].eq(3.0).all().item<bool>(), "and so is its gradient");
  check(inputs[1][2].isnan().all().item<bool>(), "a row not given stays unrecorded");
  check(inputs[0].isnan().all().item<bool>(), "the other step's rows stay unrecorded");

  bool threw = false;
  try {
    data.record_loss_head(torch::full({1, 3}, 99, torch::kInt64), torch::zeros({1, 3, H}), torch::zeros({1, 3, H}));
  } catch (const std::exception&) {
    threw = true;
  }
  check(threw, "a row of no timed batch throws");
  return tournament::testing::check_status();
}
