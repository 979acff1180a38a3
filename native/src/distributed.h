// The process group of a multi-rank run (train_api.h, "Several ranks"):
// libtorch's c10d, NCCL between CUDA devices and Gloo on the CPU, never a
// transport of our own. The runner makes it before it loads the plugin; the
// ranks meet through a c10d FileStore in the sandbox's private /tmp, which
// exists only for this run's sandbox and only its ranks can reach.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/torch.h>

#include <chrono>
#include <string>

namespace tournament {

// Rank `rank` of `world_size` on `device`: every rank must call it (it waits
// for the others up to `timeout`). Throws when the build has no backend for
// the device.
c10::intrusive_ptr<c10d::ProcessGroup> make_process_group(const torch::Device& device, int rank, int world_size,
                                                          const std::string& store_path,
                                                          std::chrono::milliseconds timeout);

}  // namespace tournament
