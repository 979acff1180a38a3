// A keyed hash of memory, for the check that nothing of a run outlived its
// kill: the trusted side hashes the parameter and logits memory right after
// the kill and again after the last read the verdict rests on.
//
// digest = sum over the 32-bit words w_i of w_i * c_i (mod 2^64), with every
// coefficient c_i odd and drawn independently from `key` by the device's own
// generator, so it runs where the memory is (a 15 GB region hashes on the GPU
// in a few passes, not through the host). Unlike a plain sum it changes when
// words move or change in any way; with the key drawn after the kill, a
// change cannot be aimed at a collision: for any fixed change, the digests
// collide with probability at most 2^-32 over the key.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace tournament {

// `words`: any contiguous tensor, hashed as its raw bytes (numel * itemsize
// must be a multiple of 4). Same key and bytes, same digest, on any device.
int64_t keyed_digest(const torch::Tensor& words, uint64_t key);

// A key nobody could know before now (std::random_device).
uint64_t fresh_key();

}  // namespace tournament
