// Native tests of the engine's bf16 products on the CPU (matmul_acc32 and
// linear_acc32, native/include/tournament/model.h), run by
// test/native.test.ts. oneDNN is switched off first, so libtorch's own bf16
// products accumulate in bf16 as they do on every CPU without AVX-512; the
// engine's must still accumulate in float32. Exit status 0 when every check holds; each failure prints a line.
#include <cstdio>

#include "check.h"
#include "tournament/model.h"

using tournament::testing::check;

namespace {

// [rows, cols] bf16: the first row 256, the others 1. Summed over its rows:
// 512 in float32; 256 where each partial sum rounds to bf16 (257 rounds to 256).
torch::Tensor tall(int64_t rows, int64_t cols) {
  auto t = torch::ones({rows, cols}, torch::kBFloat16);
  t.select(0, 0).fill_(256);
  return t;
}

bool all_equal(const torch::Tensor& t, double v) { return t.to(torch::kFloat32).eq(v).all().item<bool>(); }

}  // namespace

int main() {
  at::globalContext().setUserEnabledMkldnn(false);
  const auto a = tall(257, 32).t().contiguous();            // [32, 257]
  const auto b = torch::ones({257, 32}, torch::kBFloat16);  // [257, 32]
  std::printf("note: libtorch's own bf16 product here gives %g (512 in float32, 256 accumulated in bf16)\n",
              a.mm(b)[0][0].item<float>());

  check(all_equal(tournament::matmul_acc32(a, b), 512), "matmul of [32, 257] and [257, 32] accumulates in float32");
  check(all_equal(tournament::matmul_acc32(a.expand({2, 32, 257}), b.expand({2, 257, 32})), 512),
        "batched matmul accumulates in float32");
  check(all_equal(tournament::linear_acc32(a, b.t(), torch::full({32}, 4, torch::kBFloat16)), 516),
        "linear with a bias accumulates in float32");
  check(tournament::matmul_acc32(a, b).scalar_type() == torch::kBFloat16, "the product keeps bf16");

  // The backward's products too: the weight's gradient sums over the 257 rows.
  auto x = tall(257, 32);                                                     // [257, 32]
  auto w = torch::ones({8, 32}, torch::kBFloat16).requires_grad_(true);       // [8, 32]
  tournament::linear_acc32(x, w).sum().backward();                          // d/dw = ones^T x
  check(w.grad().scalar_type() == torch::kBFloat16 && all_equal(w.grad(), 512),
        "linear's weight gradient accumulates in float32");
  auto xi = torch::ones({4, 32}, torch::kBFloat16).requires_grad_(true);      // [4, 32]
  tournament::linear_acc32(xi, tall(257, 32)).sum().backward();            // d/dx = ones W, over 257 outputs
  check(all_equal(xi.grad(), 512), "linear's input gradient accumulates in float32");
  return tournament::testing::check_status();
}
