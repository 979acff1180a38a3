// Memory shared between the trusted process and a runner: the model's
// parameters, the batches and the returned logits. The trusted process
// creates it and keeps ownership; a runner maps it from an inherited file
// descriptor. On the CPU it is a memfd (POSIX shared memory without a name);
// on CUDA it is device memory from cuMemCreate, exported as a file
// descriptor (CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR).
#pragma once

#include <torch/torch.h>

#include <cstddef>

namespace tournament {

class SharedRegion {
 public:
  SharedRegion() = default;
  SharedRegion(SharedRegion&& o) noexcept { *this = std::move(o); }
  SharedRegion& operator=(SharedRegion&& o) noexcept;
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  ~SharedRegion();

  // Owner side: at least `bytes` (rounded up to the allocation granularity).
  static SharedRegion create(size_t bytes, torch::Device device);
  // Runner side: maps the region behind `fd` (taken over, closed on destruction).
  static SharedRegion map(int fd, size_t bytes, torch::Device device);

  size_t size() const { return size_; }
  // A file descriptor for the region, to hand to a child process (owner side).
  int fd() const { return fd_; }

  // A tensor over [offset, offset + numel * itemsize) of the region.
  torch::Tensor view(size_t offset, at::IntArrayRef shape, torch::Dtype dtype) const;

 private:
  void release();
  void* ptr_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
  torch::Device device_{torch::kCPU};
  unsigned long long cuda_handle_ = 0;  // CUmemGenericAllocationHandle
  bool cuda_ = false;
};


}  // namespace tournament
