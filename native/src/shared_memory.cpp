#include "shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <c10/util/accumulate.h>

#include "compat.h"

#ifdef TOURNAMENT_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <cuda.h>
#endif

namespace tournament {

namespace {

[[noreturn]] void sys_fail(const char* what) {
  TORCH_CHECK(false, "shared memory: ", what, ": ", std::strerror(errno));
}

#ifdef TOURNAMENT_WITH_CUDA
void cu_check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    const char* msg = nullptr;
    cuGetErrorString(r, &msg);
    TORCH_CHECK(false, "shared memory: ", what, ": ", msg ? msg : "unknown CUDA error");
  }
}

CUmemAllocationProp cuda_prop(int device) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return prop;
}

// Reserves an address range, maps the allocation and grants this device
// read/write access to it.
void* cuda_map(CUmemGenericAllocationHandle handle, size_t bytes, int device) {
  CUdeviceptr ptr = 0;
  cu_check(cuMemAddressReserve(&ptr, bytes, 0, 0, 0), "cuMemAddressReserve");
  cu_check(cuMemMap(ptr, bytes, 0, handle, 0), "cuMemMap");
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  cu_check(cuMemSetAccess(ptr, bytes, &access, 1), "cuMemSetAccess");
  return reinterpret_cast<void*>(ptr);
}
#endif

}  // namespace

SharedRegion& SharedRegion::operator=(SharedRegion&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    size_ = o.size_;
    fd_ = o.fd_;
    device_ = o.device_;
    cuda_handle_ = o.cuda_handle_;
    cuda_ = o.cuda_;
    o.ptr_ = nullptr;
    o.size_ = 0;
    o.fd_ = -1;
    o.cuda_ = false;
  }
  return *this;
}

SharedRegion::~SharedRegion() { release(); }

void SharedRegion::release() {
  if (cuda_) {
#ifdef TOURNAMENT_WITH_CUDA
    if (ptr_) {
      cuMemUnmap(reinterpret_cast<CUdeviceptr>(ptr_), size_);
      cuMemAddressFree(reinterpret_cast<CUdeviceptr>(ptr_), size_);
    }
    cuMemRelease(static_cast<CUmemGenericAllocationHandle>(cuda_handle_));
#endif
  } else if (ptr_) {
    munmap(ptr_, size_);
  }
  if (fd_ >= 0) close(fd_);
  ptr_ = nullptr;
  fd_ = -1;
  cuda_ = false;
}

SharedRegion SharedRegion::create(size_t bytes, torch::Device device) {
  SharedRegion r;
  r.device_ = device;
  if (bytes == 0) bytes = 1;
  if (device.is_cuda()) {
#ifdef TOURNAMENT_WITH_CUDA
    const int dev = compat::cuda_index(device);
    // The region's own device, not device 0: its primary context current on
    // this thread for the driver calls below (allocation, mapping and access
    // name `dev` explicitly as well).
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(dev));
    torch::empty({1}, torch::TensorOptions().device(device));  // creates the primary context
    auto prop = cuda_prop(dev);
    size_t gran = 0;
    cu_check(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), "granularity");
    bytes = (bytes + gran - 1) / gran * gran;
    CUmemGenericAllocationHandle handle;
    cu_check(cuMemCreate(&handle, bytes, &prop, 0), "cuMemCreate");
    r.cuda_ = true;
    r.cuda_handle_ = handle;
    r.size_ = bytes;
    int fd = -1;
    cu_check(cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0), "export");
    r.fd_ = fd;
    r.ptr_ = cuda_map(handle, bytes, dev);
    return r;
#else
    TORCH_CHECK(false, "shared memory: this engine was built without CUDA");
#endif
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  bytes = (bytes + page - 1) / page * page;
  r.fd_ = memfd_create("tournament", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (r.fd_ < 0) sys_fail("memfd_create");
  if (ftruncate(r.fd_, static_cast<off_t>(bytes)) != 0) sys_fail("ftruncate");
  // The runner holds this fd: sealed, it can neither shrink the region (the
  // owner's next read would die of SIGBUS) nor grow it, nor add seals of its own.
  if (fcntl(r.fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) sys_fail("sealing the memfd");
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd_, 0);
  if (p == MAP_FAILED) sys_fail("mmap");
  r.ptr_ = p;
  r.size_ = bytes;
  return r;
}

SharedRegion SharedRegion::map(int fd, size_t bytes, torch::Device device) {
  SharedRegion r;
  r.device_ = device;
  r.fd_ = fd;
  r.size_ = bytes;
  if (device.is_cuda()) {
#ifdef TOURNAMENT_WITH_CUDA
    const int dev = compat::cuda_index(device);
    // The region's own device, not device 0: its primary context current on
    // this thread for the driver calls below (allocation, mapping and access
    // name `dev` explicitly as well).
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(dev));
    torch::empty({1}, torch::TensorOptions().device(device));  // creates the primary context
    CUmemGenericAllocationHandle handle;
    cu_check(cuMemImportFromShareableHandle(&handle, reinterpret_cast<void*>(static_cast<intptr_t>(fd)),
                                            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
             "cuMemImportFromShareableHandle");
    r.cuda_ = true;
    r.cuda_handle_ = handle;
    r.ptr_ = cuda_map(handle, bytes, dev);
    return r;
#else
    TORCH_CHECK(false, "shared memory: this engine was built without CUDA");
#endif
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) sys_fail("mmap");
  r.ptr_ = p;
  return r;
}

torch::Tensor SharedRegion::view(size_t offset, at::IntArrayRef shape, torch::Dtype dtype) const {
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(shape)) * c10::elementSize(dtype);
  TORCH_CHECK(offset + bytes <= size_, "shared memory: view [", offset, ", ", offset + bytes, ") outside a region of ",
              size_, " bytes");
  return torch::from_blob(static_cast<char*>(ptr_) + offset, shape,
                          torch::TensorOptions().dtype(dtype).device(device_));
}

}  // namespace tournament
