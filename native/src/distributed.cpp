#include "distributed.h"

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/version.h>

// The backends' headers declare their classes only under USE_C10D_*, which
// libtorch's CMake flags may or may not already define.
#ifdef TOURNAMENT_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef TOURNAMENT_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace tournament {

namespace {

// libtorch's one version difference here (the rest is compat.h's): in 1.x a
// backend (ProcessGroupGloo, ProcessGroupNCCL) is itself a ProcessGroup; from
// 2.0 on it is a c10d::Backend that a ProcessGroup dispatches to.
// NOT YET BUILT against a 2.x libtorch (this machine has Debian's 1.13):
// scripts/multi-gpu.sh's build is the first that compiles this branch.
template <typename B>
c10::intrusive_ptr<c10d::ProcessGroup> as_group(c10::intrusive_ptr<B> backend,
                                                const c10::intrusive_ptr<c10d::Store>& store, int rank, int world_size,
                                                c10::DeviceType device) {
#if TORCH_VERSION_MAJOR >= 2
  const auto type = device == c10::DeviceType::CUDA ? c10d::ProcessGroup::BackendType::NCCL
                                                    : c10d::ProcessGroup::BackendType::GLOO;
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world_size);
  group->setDefaultBackend(type);
  group->setBackend(device, type, backend);
  return group;
#else
  (void)store, (void)rank, (void)world_size, (void)device;
  return backend;
#endif
}

}  // namespace

c10::intrusive_ptr<c10d::ProcessGroup> make_process_group(const torch::Device& device, int rank, int world_size,
                                                          const std::string& store_path,
                                                          std::chrono::milliseconds timeout) {
  auto store = c10::make_intrusive<c10d::FileStore>(store_path, world_size);
  store->setTimeout(timeout);
  if (device.is_cuda()) {
#ifdef TOURNAMENT_WITH_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    return as_group(c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, opts), store, rank, world_size,
                    c10::DeviceType::CUDA);
#else
    TORCH_CHECK(false, "several ranks on CUDA need NCCL, and this engine was built without it");
#endif
  }
#ifdef TOURNAMENT_WITH_GLOO
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // Loopback: every rank is in the one sandbox, whose network namespace has nothing else.
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return as_group(c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, opts), store, rank, world_size,
                  c10::DeviceType::CPU);
#else
  TORCH_CHECK(false, "several ranks on the CPU need Gloo's headers (Debian: libgloo-dev), and this engine was built without them");
#endif
}

}  // namespace tournament
