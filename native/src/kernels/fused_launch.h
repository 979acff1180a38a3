// Launchers of the fused bf16 kernels (fused.cu): raw device pointers, the
// caller's stream, the launch's error code back. kernels.cpp is the only user;
// the public API is tournament/kernels.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tournament::kernels::cuda {

// A [B, S, N, D] bf16 tensor with D contiguous; strides in elements.
struct StridedBSND {
  const void* data;
  int64_t sb, ss, sn;
};

int max_norm_width();  // the widest row the RMSNorm kernels take (H % 8 == 0 too)

cudaError_t swiglu_fwd(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream);
cudaError_t swiglu_bwd(void* dp, void* gate, void* up, int64_t n, cudaStream_t stream);
cudaError_t rope_fwd(void* qkv, const void* cos, const void* sin, int64_t T, int64_t S, int64_t ld, int heads, int D,
                     cudaStream_t stream);
cudaError_t rope_bwd(const StridedBSND& dq, const StridedBSND& dk, const StridedBSND& dv, const void* cos,
                     const void* sin, void* out, int64_t T, int64_t S, int64_t ld, int nq, int nkv, int D,
                     cudaStream_t stream);
cudaError_t rms_fwd(const void* x, const void* res, void* sum_out, const void* w, void* y, float* rstd, int64_t T, int H,
                    float eps, cudaStream_t stream);
int64_t rms_bwd_blocks(int64_t T, int rows);
cudaError_t rms_bwd(const void* g, const void* x, const void* w, const float* rstd, const void* dres, void* dx,
                    float* dw_partial, int64_t T, int H, int rows, cudaStream_t stream);

cudaError_t ce_grad(void* logits, const int64_t* targets, float* row_logp, int64_t rows, int64_t vocab, float scale,
                    cudaStream_t stream);

// out[i] = bf16(sum over t < terms of float(x[t * n + i])). n elements a term.
cudaError_t sum_terms(const void* x, void* out, int64_t n, int terms, cudaStream_t stream);

// mode 0: acc = float(x); 1: acc += float(x); 2: out = bf16(acc + float(x)). n elements.
cudaError_t accumulate(float* acc, const void* x, void* out, int64_t n, int mode, cudaStream_t stream);

// PyTorch's fused AdamW steps (fused_adam_utils.cuh, ADAMW mode, no amsgrad)
// in float math on one bf16 tensor and its bf16 gradient and moments, in place.
// fresh: the moments are taken as zero and not read (they may be uninitialised).
cudaError_t adamw(void* p, const void* g, void* m, void* v, int64_t n, double lr, double beta1, double beta2,
                  double weight_decay, double eps, float bc1, float bc2_sqrt, bool fresh, cudaStream_t stream);

}  // namespace tournament::kernels::cuda
