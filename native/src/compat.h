// Every difference between the libtorch builds the engine meets, in one place:
// Debian's libtorch-dev 1.13 (CPU) and the libtorch of a pip PyTorch 2.x (CUDA).
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <memory>

#define TOURNAMENT_TORCH_2 (TORCH_VERSION_MAJOR >= 2)

namespace tournament::compat {

// Whether this build has the public scaled_dot_product_attention (flash and
// memory-efficient kernels on CUDA). 1.13 has only a private prototype.
constexpr bool kHasSdpa = TOURNAMENT_TORCH_2;

// Whether SDPA takes grouped-query attention itself (enable_gqa, PyTorch 2.5).
#define TOURNAMENT_TORCH_GQA (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5))

// Causal attention through SDPA. q [B, Nq, S, D], k/v [B, Nkv, S, D] with Nq a
// multiple of Nkv -> [B, Nq, S, D]. Where SDPA would run a fused kernel
// (flash) on the grouped heads as they are, it gets them so (no expanded
// copies of k and v to keep for backward); otherwise k and v are expanded to
// Nq heads first.
inline torch::Tensor sdpa_causal(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TOURNAMENT_TORCH_2
  const int64_t groups = q.size(1) / k.size(1);
  if (groups == 1) return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
#if TOURNAMENT_TORCH_GQA
  // SDPBackend: -1 error, 0 math, 1 flash, 2 memory-efficient, 3 cuDNN, ...
  const int64_t backend = at::_fused_sdp_choice(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true,
                                                /*scale=*/c10::nullopt, /*enable_gqa=*/true);
  if (q.is_cuda() && backend > 0) {
    return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true,
                                            /*scale=*/c10::nullopt, /*enable_gqa=*/true);
  }
#endif
  return at::scaled_dot_product_attention(q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1),
                                          /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
#else
  (void)q; (void)k; (void)v;
  TORCH_CHECK(false, "scaled_dot_product_attention needs libtorch 2.x; this build is ", TORCH_VERSION);
#endif
}

// Whether one fused AdamW kernel can update all tensors on this device.
inline bool has_fused_adamw(const torch::Device& device) {
  return TOURNAMENT_TORCH_2 && device.is_cuda();
}

// PyTorch's fused AdamW (the kernel behind torch.optim.AdamW(fused=True)).
// `steps` are float32 scalars on the device, already incremented.
inline void fused_adamw(std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& grads,
                        std::vector<torch::Tensor>& exp_avg, std::vector<torch::Tensor>& exp_avg_sq,
                        std::vector<torch::Tensor>& steps, double lr, double beta1, double beta2,
                        double weight_decay, double eps) {
#if TOURNAMENT_TORCH_2
  at::_fused_adamw_(params, grads, exp_avg, exp_avg_sq, /*max_exp_avg_sqs=*/{}, steps, lr, beta1, beta2,
                    weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)params; (void)grads; (void)exp_avg; (void)exp_avg_sq; (void)steps;
  (void)lr; (void)beta1; (void)beta2; (void)weight_decay; (void)eps;
  TORCH_CHECK(false, "fused AdamW needs libtorch 2.x");
#endif
}

// A private generator for `device`, seeded: the same seed gives the same
// numbers on every run of one device type, whatever else drew from the global one.
inline at::Generator seeded_generator(const torch::Device& device, uint64_t seed) {
  auto gen = at::globalContext().defaultGenerator(device).clone();
  gen.set_current_seed(seed);
  return gen;
}

#ifdef TOURNAMENT_WITH_CUDA
// The CUDA device `device` names: its index, or the current device for "cuda".
c10::DeviceIndex cuda_index(const torch::Device& device);
#endif

// Whether this process's bf16 products on the CPU accumulate in float32, as
// cuBLAS's and oneDNN's do. libtorch 1.13 on a CPU without AVX-512 has no
// oneDNN bf16 path and accumulates them in bf16 (matmul_acc32 in model.h).
bool cpu_bf16_products_in_float32();

// Free device memory plus the caching allocator's unused cached blocks, in
// bytes; -1 on the CPU.
int64_t available_device_memory(const torch::Device& device);

// Peak device memory in bytes since the last reset, or -1 where the build
// cannot tell (CPU: the driver reads the process's peak RSS instead).
int64_t cuda_peak_allocated(const torch::Device& device);
void cuda_reset_peak(const torch::Device& device);
void cuda_synchronize(const torch::Device& device);
// Makes `device` the calling thread's current CUDA device (a runner's rank: its
// plugin's default device and current stream are its rank's).
void cuda_set_device(const torch::Device& device);
// A host byte buffer of exactly `bytes` (uint8): page-locked for `device`
// when it is a CUDA device and the host allows (else pageable), so copies to
// and from the card run at full speed.
// Not through PyTorch's pinned allocator, which rounds every block up to a
// power of two (the 19 GiB of a kept 7B run would take 32).
torch::Tensor host_buffer(int64_t bytes, const torch::Device& device);
// Page-locks `bytes` of host memory at `ptr` (page-aligned) for `device`'s
// copies when it is a CUDA device; false where it is not or the host does not
// allow it (copies then run from pageable memory: slower, same bytes).
bool pin_host(void* ptr, size_t bytes, const torch::Device& device);
// Copies into host memory, each ordered after the work queued so far on the
// calling thread's current stream but run in turn on a stream of its own, so
// that the card's work goes on beside them (CUDA); at once on the CPU. The
// source's memory is not reused before its copy has run, even where the
// caller drops it at once.
class SideCopy {
 public:
  explicit SideCopy(const torch::Device& device);
  ~SideCopy();
  SideCopy(const SideCopy&) = delete;
  SideCopy& operator=(const SideCopy&) = delete;
  // dst (host) = src (on the device), as said above.
  void start(torch::Tensor dst, const torch::Tensor& src);
  // The current stream's later work waits for every copy started (the
  // calling thread does not); nothing on the CPU, where they are done already.
  void wait();

 private:
  struct Streams;
  std::unique_ptr<Streams> streams_;  // null on the CPU
};
// Returns this process's cached, unused device memory to the driver.
void cuda_empty_cache(const torch::Device& device);

}  // namespace tournament::compat
