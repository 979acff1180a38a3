#include "fingerprint.h"

#include <random>

#include "compat.h"

namespace tournament {

int64_t keyed_digest(const torch::Tensor& t, uint64_t key) {
  TORCH_CHECK(t.is_contiguous(), "keyed_digest: the tensor must be contiguous");
  const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
  TORCH_CHECK(bytes % 4 == 0, "keyed_digest: ", bytes, " bytes is not a whole number of 32-bit words");
  torch::NoGradGuard no_grad;
  // The raw bytes as 32-bit words, without a copy.
  auto words = torch::from_blob(t.data_ptr(), {bytes / 4}, t.options().dtype(torch::kInt32));
  auto gen = compat::seeded_generator(t.device(), key);
  // Chunks bound the temporaries (three int64 chunks at a time) on a region of many GB.
  constexpr int64_t kChunk = int64_t{1} << 24;
  std::vector<torch::Tensor> sums;
  for (int64_t at = 0; at < words.numel(); at += kChunk) {
    const int64_t n = std::min(kChunk, words.numel() - at);
    auto c = torch::empty({n}, words.options().dtype(torch::kInt64)).random_(gen).bitwise_or_(1);  // odd, 63 random bits
    // int64 products and sums wrap modulo 2^64 on both devices.
    sums.push_back(words.narrow(0, at, n).to(torch::kInt64).mul_(c).sum());
  }
  if (sums.empty()) return 0;
  return torch::stack(sums).sum().item<int64_t>();
}

uint64_t fresh_key() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace tournament
