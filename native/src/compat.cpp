#include "compat.h"

#ifdef TOURNAMENT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/core/Event.h>
#endif

namespace tournament::compat {

#ifdef TOURNAMENT_WITH_CUDA
c10::DeviceIndex cuda_index(const torch::Device& device) {
  return device.has_index() ? device.index() : c10::cuda::current_device();
}
#endif

// 256 + 256 ones is 512 in float32, and stays 256 where each partial sum
// rounds to bf16 (257 rounds to 256). Large enough for oneDNN's path where
// the build has one (it leaves small products to the bf16 loop too).
bool cpu_bf16_products_in_float32() {
  static const bool yes = [] {
    torch::NoGradGuard no_grad;
    auto a = torch::ones({32, 257}, torch::kBFloat16);  // [32, 257]: each row 256, then 256 ones
    a.select(1, 0).fill_(256);
    const auto b = torch::ones({257, 32}, torch::kBFloat16);
    const auto three = torch::ones({2, 257, 32}, torch::kBFloat16);
    return a.mm(b).eq(512).all().item<bool>() &&
           torch::matmul(a.expand({2, 32, 257}), three).eq(512).all().item<bool>();
  }();
  return yes;
}

int64_t available_device_memory(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) {
    const auto index = cuda_index(device);
    c10::cuda::CUDAGuard guard(index);  // its primary context current on this thread
    size_t free_bytes = 0, total_bytes = 0;
    TORCH_CHECK(cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_SUCCESS, "cuMemGetInfo failed");
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    const int64_t cached_unused = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
    return static_cast<int64_t>(free_bytes) + cached_unused;
  }
#endif
  (void)device;
  return -1;
}

int64_t cuda_peak_allocated(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(cuda_index(device));
    return stats.allocated_bytes[0].peak;  // index 0: the aggregate over pool types
  }
#endif
  (void)device;
  return -1;
}

void cuda_reset_peak(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(cuda_index(device));
#endif
  (void)device;
}

torch::Tensor host_buffer(int64_t bytes, const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(cuda_index(device));  // a current context for the driver call
    void* p = nullptr;
    // Where the host cannot lock that much, pageable memory below: slower copies, same bytes.
    if (cuMemHostAlloc(&p, static_cast<size_t>(bytes), CU_MEMHOSTALLOC_PORTABLE) == CUDA_SUCCESS) {
      return torch::from_blob(p, {bytes}, [](void* q) { cuMemFreeHost(q); }, torch::TensorOptions().dtype(torch::kUInt8));
    }
  }
#endif
  (void)device;
  return torch::empty({bytes}, torch::TensorOptions().dtype(torch::kUInt8));
}

void cuda_synchronize(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  // The device named, not the calling thread's current one: evaluations on
  // several GPUs run on threads whose current device is cuda:0.
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(cuda_index(device));
    c10::cuda::device_synchronize();
  }
#endif
  (void)device;
}

void cuda_set_device(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) c10::cuda::set_device(cuda_index(device));
#endif
  (void)device;
}

void cuda_empty_cache(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  (void)device;
}

bool pin_host(void* ptr, size_t bytes, const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda() && bytes > 0) {
    c10::cuda::CUDAGuard guard(cuda_index(device));  // a current context for the driver call
    return cuMemHostRegister(ptr, bytes, CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS;
  }
#endif
  (void)ptr; (void)bytes; (void)device;
  return false;
}

#ifdef TOURNAMENT_WITH_CUDA
struct SideCopy::Streams {
  c10::DeviceIndex index;
  c10::cuda::CUDAStream stream;
  c10::Event queued{c10::DeviceType::CUDA}, copied{c10::DeviceType::CUDA};
};
#else
struct SideCopy::Streams {};
#endif

SideCopy::SideCopy(const torch::Device& device) {
#ifdef TOURNAMENT_WITH_CUDA
  if (device.is_cuda()) {
    const auto index = cuda_index(device);
    streams_.reset(new Streams{index, c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)});
  }
#endif
  (void)device;
}

SideCopy::~SideCopy() = default;

void SideCopy::start(torch::Tensor dst, const torch::Tensor& src) {
#ifdef TOURNAMENT_WITH_CUDA
  if (streams_) {
    auto& s = *streams_;
    s.queued.record(c10::cuda::getCurrentCUDAStream(s.index));
    s.queued.block(s.stream);
    {
      c10::cuda::CUDAStreamGuard guard(s.stream);
      dst.copy_(src, /*non_blocking=*/true);
    }
    // The allocator's block (where src is one: not the shared regions) stays
    // unused until the side stream is past this copy.
    c10::cuda::CUDACachingAllocator::recordStream(src.storage().data_ptr(), s.stream);
    s.copied.record(s.stream);
    return;
  }
#endif
  dst.copy_(src);
}

void SideCopy::wait() {
#ifdef TOURNAMENT_WITH_CUDA
  if (streams_) streams_->copied.block(c10::cuda::getCurrentCUDAStream(streams_->index));
#endif
}

}  // namespace tournament::compat
