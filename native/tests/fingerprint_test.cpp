// Native tests of the post-kill fingerprint (native/src/fingerprint.h), run by
// test/native.test.ts. Exit status 0 when every check holds; each failure
// prints a line.
#include <cstdio>

#include "check.h"
#include "../src/fingerprint.h"

using tournament::keyed_digest;
using tournament::testing::check;

int main() {
  torch::manual_seed(7);
  // bf16 weights as the parameter memory holds them, viewed as raw bytes.
  auto w = torch::randn({4096}, torch::kFloat32).to(torch::kBFloat16);
  const uint64_t key = 0x1234abcdULL;
  const int64_t d0 = keyed_digest(w, key);

  check(keyed_digest(w.clone(), key) == d0, "the same bytes give the same digest");

  auto swapped = w.clone();
  auto words = swapped.view(torch::kInt32);  // the hash's own unit
  auto a = words[10].item<int32_t>(), b = words[20].item<int32_t>();
  check(a != b, "the words to swap differ");
  words[10] = b;
  words[20] = a;
  check(keyed_digest(swapped, key) != d0, "swapping two words changes the digest");
  check(swapped.view(torch::kInt16).sum(torch::kInt64).item<int64_t>() == w.view(torch::kInt16).sum(torch::kInt64).item<int64_t>(),
        "(an order-free sum would not have seen the swap)");

  auto flipped = w.clone();
  auto bytes = flipped.view(torch::kUInt8);
  bytes[777] = static_cast<uint8_t>(bytes[777].item<uint8_t>() ^ 1);
  check(keyed_digest(flipped, key) != d0, "flipping one bit changes the digest");

  check(keyed_digest(w, key + 1) != d0, "another key gives another digest");

  // A region larger than one chunk of the hash (2^24 words): the tail counts too.
  auto big = torch::zeros({(int64_t{1} << 24) + 3}, torch::kInt32);
  const int64_t b0 = keyed_digest(big, key);
  big[(int64_t{1} << 24) + 2] = 1;
  check(keyed_digest(big, key) != b0, "a change past the first chunk changes the digest");

  bool refused = false;
  try {
    keyed_digest(torch::zeros({3}, torch::kUInt8), key);
  } catch (const c10::Error&) {
    refused = true;
  }
  check(refused, "bytes that are not whole words are refused");
  return tournament::testing::check_status();
}
