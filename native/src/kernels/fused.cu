// Fused elementwise kernels for bf16 training steps (tournament/kernels.h is
// the public API; kernels.cpp checks tensors and calls the launchers below).
// Each kernel reproduces the rounding of the PyTorch ops it replaces: float
// arithmetic inside, a bf16 rounding exactly where the unfused ops store a
// bf16 tensor. Only raw pointers here (no torch headers), so this file builds
// with nvcc alone.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "fused_launch.h"

namespace tournament::kernels::cuda {

namespace {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 b(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ float rb(float x) { return f(b(x)); }  // round through bf16

// 8 bf16 in one 16-byte access.
struct alignas(16) V8 {
  bf16 v[8];
};

// silu as ATen computes it in float: x / (1 + exp(-x)).
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// ---------------------------------------------------------------- SwiGLU

// prod = bf16(bf16(silu(gate)) * up): torch::silu(gate) * up.
__global__ void swiglu_fwd_kernel(const bf16* __restrict__ gate, const bf16* __restrict__ up, bf16* __restrict__ out,
                                  int64_t n) {
  const int64_t i8 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i8 + 8 <= n) {
    V8 g = *reinterpret_cast<const V8*>(gate + i8), u = *reinterpret_cast<const V8*>(up + i8), o;
#pragma unroll
    for (int k = 0; k < 8; ++k) o.v[k] = b(rb(silu(f(g.v[k]))) * f(u.v[k]));
    *reinterpret_cast<V8*>(out + i8) = o;
  } else {
    for (int64_t i = i8; i < n; ++i) out[i] = b(rb(silu(f(gate[i]))) * f(up[i]));
  }
}

// In place, from dp = d(prod) and the saved gate, up:
//   dp   <- prod   = bf16(silu_g * up)          (for down's weight gradient)
//   gate <- d_gate = silu_backward(bf16(dp * up), gate)
//   up   <- d_up   = bf16(dp * silu_g)
// with silu_g = bf16(silu(gate)), as the MLP's autograd ops compute them.
__device__ __forceinline__ void swiglu_bwd_one(float dp, float g, float u, bf16* prod, bf16* dg, bf16* du) {
  const float sg = rb(silu(g));
  *prod = b(sg * u);
  *du = b(dp * sg);
  const float dsilu = rb(dp * u);
  const float sig = 1.0f / (1.0f + expf(-g));
  *dg = b(dsilu * sig * (1.0f + g * (1.0f - sig)));
}

__global__ void swiglu_bwd_kernel(bf16* __restrict__ dp, bf16* __restrict__ gate, bf16* __restrict__ up, int64_t n) {
  const int64_t i8 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (i8 + 8 <= n) {
    V8 d = *reinterpret_cast<const V8*>(dp + i8), g = *reinterpret_cast<const V8*>(gate + i8),
       u = *reinterpret_cast<const V8*>(up + i8), p, dg, du;
#pragma unroll
    for (int k = 0; k < 8; ++k) swiglu_bwd_one(f(d.v[k]), f(g.v[k]), f(u.v[k]), &p.v[k], &dg.v[k], &du.v[k]);
    *reinterpret_cast<V8*>(dp + i8) = p;
    *reinterpret_cast<V8*>(gate + i8) = dg;
    *reinterpret_cast<V8*>(up + i8) = du;
  } else {
    for (int64_t i = i8; i < n; ++i) {
      bf16 p, dg, du;
      swiglu_bwd_one(f(dp[i]), f(gate[i]), f(up[i]), &p, &dg, &du);
      dp[i] = p;
      gate[i] = dg;
      up[i] = du;
    }
  }
}

// ---------------------------------------------------------------- rotary

// V consecutive bf16 (V = 8: one 16-byte access; V = 1: scalar).
template <int V>
struct Vec {
  bf16 v[V];
};
template <int V>
__device__ __forceinline__ void load(const bf16* p, float* out) {
  if constexpr (V == 8) {
    const V8 a = *reinterpret_cast<const V8*>(p);
#pragma unroll
    for (int k = 0; k < 8; ++k) out[k] = f(a.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = f(p[k]);
  }
}
template <int V>
__device__ __forceinline__ void store(bf16* p, const float* in) {
  if constexpr (V == 8) {
    V8 a;
#pragma unroll
    for (int k = 0; k < 8; ++k) a.v[k] = b(in[k]);
    *reinterpret_cast<V8*>(p) = a;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) p[k] = b(in[k]);
  }
}

// In place on the rows of the q/k/v product [T, ld]: q at columns [0, Nq D),
// k at [Nq D, (Nq + Nkv) D), v untouched. y = bf16(bf16(x cos) + bf16(R(x) sin)),
// R(x) = [-x2, x1], as x * cos + rotate_half(x) * sin. cos / sin [S, D].
// One thread per (token, head, V consecutive d < D/2) and their partners d + D/2.
template <int V>
__global__ void rope_fwd_kernel(bf16* __restrict__ qkv, const bf16* __restrict__ cos, const bf16* __restrict__ sin,
                                int64_t T, int64_t S, int64_t ld, int heads, int D) {
  const int half = D / 2, groups = half / V;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * heads * groups) return;
  const int d = (idx % groups) * V;
  const int h = (idx / groups) % heads;
  const int64_t t = idx / (static_cast<int64_t>(groups) * heads);
  const int64_t s = t % S;
  bf16* row = qkv + t * ld + static_cast<int64_t>(h) * D;
  float x1[V], x2[V], c1[V], c2[V], s1[V], s2[V], y1[V], y2[V];
  load<V>(row + d, x1);
  load<V>(row + d + half, x2);
  load<V>(cos + s * D + d, c1);
  load<V>(cos + s * D + d + half, c2);
  load<V>(sin + s * D + d, s1);
  load<V>(sin + s * D + d + half, s2);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    y1[k] = rb(x1[k] * c1[k]) + rb(-x2[k] * s1[k]);
    y2[k] = rb(x2[k] * c2[k]) + rb(x1[k] * s2[k]);
  }
  store<V>(row + d, y1);
  store<V>(row + d + half, y2);
}

// The transpose, from the gradients of the rotated q, k and of v (any strides
// over [B, S, N, D]) into the rows of dqkv [T, ld]:
//   dx = bf16(bf16(dy cos) + R^T(bf16(dy sin))), R^T(z) = [z2, -z1],
// as autograd sums the two paths of x * cos + rotate_half(x) * sin.
struct Strided4 {
  const bf16* p;
  int64_t sb, ss, sn;  // strides of B, S, N (D is contiguous)
};

template <int V>
__global__ void rope_bwd_kernel(Strided4 dq, Strided4 dk, Strided4 dv, const bf16* __restrict__ cos,
                                const bf16* __restrict__ sin, bf16* __restrict__ out, int64_t T, int64_t S,
                                int64_t ld, int nq, int nkv, int D) {
  const int half = D / 2, heads = nq + 2 * nkv, groups = half / V;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * heads * groups) return;
  const int d = (idx % groups) * V;
  int h = (idx / groups) % heads;
  const int64_t t = idx / (static_cast<int64_t>(groups) * heads);
  const int64_t bi = t / S, s = t % S;
  bf16* row = out + t * ld + static_cast<int64_t>(h) * D;
  float y1[V], y2[V];
  if (h >= nq + nkv) {  // v: a copy
    h -= nq + nkv;
    const bf16* src = dv.p + bi * dv.sb + s * dv.ss + h * dv.sn;
    load<V>(src + d, y1);
    load<V>(src + d + half, y2);
    store<V>(row + d, y1);
    store<V>(row + d + half, y2);
    return;
  }
  const Strided4& g = h < nq ? dq : dk;
  if (h >= nq) h -= nq;
  const bf16* src = g.p + bi * g.sb + s * g.ss + h * g.sn;
  float c1[V], c2[V], s1[V], s2[V], x1[V], x2[V];
  load<V>(src + d, y1);
  load<V>(src + d + half, y2);
  load<V>(cos + s * D + d, c1);
  load<V>(cos + s * D + d + half, c2);
  load<V>(sin + s * D + d, s1);
  load<V>(sin + s * D + d + half, s2);
#pragma unroll
  for (int k = 0; k < V; ++k) {
    // z = bf16(dy sin); R^T(z) = [z2, -z1] (rotate_half's backward: its first output half came from -x2)
    x1[k] = rb(y1[k] * c1[k]) + rb(y2[k] * s2[k]);
    x2[k] = rb(y2[k] * c2[k]) + (-rb(y1[k] * s1[k]));
  }
  store<V>(row + d, x1);
  store<V>(row + d + half, x2);
}

// ---------------------------------------------------------------- RMSNorm

constexpr int kNormThreads = 256;
constexpr int kNormVecs = 2;  // vectors of 8 per thread: H <= 256 * 8 * 2 = 4096 (Qwen2.5-7B: 3584)

__device__ __forceinline__ float block_sum(float v, float* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from the last call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kNormThreads / 32; ++w) total += shared[w];
  return total;
}

// One block per row. With `res`: s = bf16(x + res) is written to `sum_out`
// and normalised (the residual add of the reference, one bf16 rounding).
// rstd = rsqrt(mean(s^2) + eps) in float; y = bf16(w * bf16(s * rstd)).
__global__ void __launch_bounds__(kNormThreads) rms_fwd_kernel(const bf16* __restrict__ x, const bf16* __restrict__ res,
                                                                bf16* __restrict__ sum_out, const bf16* __restrict__ w,
                                                                bf16* __restrict__ y, float* __restrict__ rstd_out,
                                                                int H, float eps) {
  __shared__ float shared[kNormThreads / 32];
  const int64_t row = blockIdx.x;
  const int nvec = H / 8;
  float v[kNormVecs][8];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kNormVecs; ++j) {
    const int c = (threadIdx.x + j * kNormThreads);
    if (c < nvec) {
      V8 a = *reinterpret_cast<const V8*>(x + row * H + c * 8);
      if (res) {
        V8 r = *reinterpret_cast<const V8*>(res + row * H + c * 8), o;
#pragma unroll
        for (int k = 0; k < 8; ++k) o.v[k] = b(f(a.v[k]) + f(r.v[k]));
        *reinterpret_cast<V8*>(sum_out + row * H + c * 8) = o;
        a = o;
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        v[j][k] = f(a.v[k]);
        ss += v[j][k] * v[j][k];
      }
    }
  }
  const float total = block_sum(ss, shared);
  const float rstd = rsqrtf(total * (1.0f / static_cast<float>(H)) + eps);
  if (threadIdx.x == 0 && rstd_out) rstd_out[row] = rstd;
#pragma unroll
  for (int j = 0; j < kNormVecs; ++j) {
    const int c = (threadIdx.x + j * kNormThreads);
    if (c < nvec) {
      V8 wv = *reinterpret_cast<const V8*>(w + c * 8), o;
#pragma unroll
      for (int k = 0; k < 8; ++k) o.v[k] = b(f(wv.v[k]) * rb(v[j][k] * rstd));
      *reinterpret_cast<V8*>(y + row * H + c * 8) = o;
    }
  }
}

// Backward of the above (without the residual add), rows [blockIdx.x * rows, +rows):
//   nf = x rstd (float), dn = bf16(g w), dx = bf16(rstd (dn - nf mean(dn nf)));
//   with `dres`: dx = bf16(dres + dx) (the residual's gradient, summed as autograd does);
//   dw_partial[blockIdx.x, c] = sum over the rows of bf16(g bf16(nf)).
// One vector of 8 columns per thread (blockDim.x = H / 8 rounded up to a
// warp, at most 1024): about half the registers of a thread holding two
// vectors in float (98), so more rows in flight on each multiprocessor (the
// kernel waits on memory: about 2 TB/s with two vectors a thread). The next
// row's g and x are loaded before this row's sum.
__device__ __forceinline__ float block_sum_n(float v, float* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // `shared` may still be read from the last call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < warps; ++w) total += shared[w];
  return total;
}

// MaxThreads 448 (Qwen2.5-7B, H = 3584) with two blocks a multiprocessor: 72
// registers a thread, no spills (sm_90).
template <int MaxThreads, int MinBlocks>
__global__ void __launch_bounds__(MaxThreads, MinBlocks) rms_bwd_kernel(const bf16* __restrict__ g, const bf16* __restrict__ x,
                                                       const bf16* __restrict__ w, const float* __restrict__ rstd,
                                                       const bf16* __restrict__ dres, bf16* __restrict__ dx,
                                                       float* __restrict__ dw_partial, int64_t T, int H, int rows) {
  __shared__ float shared[32];
  const int c = threadIdx.x;
  const bool active = c < H / 8;
  float acc[8];
  V8 wv;
#pragma unroll
  for (int k = 0; k < 8; ++k) acc[k] = 0.f;
  if (active) wv = *reinterpret_cast<const V8*>(w + c * 8);
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows, r1 = r0 + rows < T ? r0 + rows : T;
  V8 gv, xv;
  if (active && r0 < r1) {
    gv = *reinterpret_cast<const V8*>(g + r0 * H + c * 8);
    xv = *reinterpret_cast<const V8*>(x + r0 * H + c * 8);
  }
  for (int64_t row = r0; row < r1; ++row) {
    const float rs = rstd[row];
    float dn[8], nf[8];
    float dot = 0.f;
    V8 r;
    if (active) {
      if (dres) r = *reinterpret_cast<const V8*>(dres + row * H + c * 8);  // used after the row's sum
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float gk = f(gv.v[k]);
        nf[k] = f(xv.v[k]) * rs;
        dn[k] = rb(gk * f(wv.v[k]));
        dot += dn[k] * nf[k];
        acc[k] += rb(gk * rb(nf[k]));
      }
      if (row + 1 < r1) {  // the next row's g and x, in flight during this row's sum
        gv = *reinterpret_cast<const V8*>(g + (row + 1) * H + c * 8);
        xv = *reinterpret_cast<const V8*>(x + (row + 1) * H + c * 8);
      }
    }
    const float mean = block_sum_n(dot, shared) * (1.0f / static_cast<float>(H));
    if (active) {
      V8 o;
      if (dres) {
#pragma unroll
        for (int k = 0; k < 8; ++k) o.v[k] = b(f(r.v[k]) + rb(rs * (dn[k] - nf[k] * mean)));
      } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) o.v[k] = b(rs * (dn[k] - nf[k] * mean));
      }
      *reinterpret_cast<V8*>(dx + row * H + c * 8) = o;
    }
  }
  if (active) {
#pragma unroll
    for (int k = 0; k < 8; ++k) dw_partial[static_cast<int64_t>(blockIdx.x) * H + c * 8 + k] = acc[k];
  }
}

// ---------------------------------------------------------------- float32 sums of bf16 terms

// out[i] = bf16(float(x[0][i]) + float(x[1][i]) + ...): the sum over the
// leading dimension of [terms, n] in float32, rounded once, as
// x.sum(0, float32).to(bf16) computes it (up to the order of the additions).
// One read of each term and one write, against ATen's reduction over an
// outer dimension (about 450 GB/s on the H200 for [8, V, H]).
template <int V>
__global__ void sum_terms_kernel(const bf16* __restrict__ x, bf16* __restrict__ out, int64_t n, int terms) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (i >= n) return;
  float a[V], xv[V];
  load<V>(x + i, a);
#pragma unroll 4
  for (int t = 1; t < terms; ++t) {
    load<V>(x + static_cast<int64_t>(t) * n + i, xv);
#pragma unroll
    for (int k = 0; k < V; ++k) a[k] += xv[k];
  }
  store<V>(out + i, a);
}

// mode 0: acc = float(x); 1: acc += float(x); 2: out = bf16(acc + float(x)).
// The same float32 additions as acc.add_(x) and acc.to(bf16), in one pass.
template <int V>
__global__ void accumulate_kernel(float* __restrict__ acc, const bf16* __restrict__ x, bf16* __restrict__ out, int64_t n,
                                  int mode) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (i >= n) return;
  float xv[V];
  load<V>(x + i, xv);
  if (mode == 0) {
#pragma unroll
    for (int k = 0; k < V; ++k) acc[i + k] = xv[k];
    return;
  }
  float a[V];
  if constexpr (V == 8) {
    const float4 a0 = reinterpret_cast<const float4*>(acc + i)[0], a1 = reinterpret_cast<const float4*>(acc + i)[1];
    a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w; a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) a[k] = acc[i + k];
  }
#pragma unroll
  for (int k = 0; k < V; ++k) a[k] += xv[k];
  if (mode == 2) {
    store<V>(out + i, a);
  } else if constexpr (V == 8) {
    reinterpret_cast<float4*>(acc + i)[0] = make_float4(a[0], a[1], a[2], a[3]);
    reinterpret_cast<float4*>(acc + i)[1] = make_float4(a[4], a[5], a[6], a[7]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) acc[i + k] = a[k];
  }
}

// ---------------------------------------------------------------- cross entropy

constexpr int kCeThreads = 512;

__device__ __forceinline__ float block_max_ce(float v, float* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float m = shared[0];
#pragma unroll
  for (int w = 1; w < kCeThreads / 32; ++w) m = fmaxf(m, shared[w]);
  return m;
}
__device__ __forceinline__ float block_sum_ce(float v, float* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kCeThreads / 32; ++w) total += shared[w];
  return total;
}

// One block per row of logits [n, V] (bf16), in place, as log_softmax(float)
// + exp_ + mul_(scale) + scatter_add_(-scale at the target) + .to(bf16)
// compute it: logp = (x - max) - log(sum exp(x - max)); the row becomes
// bf16(exp(logp) * scale (- scale at the target)); row_logp[row] = logp at the target.
template <int V>
__global__ void __launch_bounds__(kCeThreads) ce_grad_kernel(bf16* __restrict__ logits, const int64_t* __restrict__ targets,
                                                             float* __restrict__ row_logp, int64_t vocab, float scale) {
  __shared__ float shared[kCeThreads / 32];
  bf16* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  const int64_t nv = vocab / V;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < nv; c += kCeThreads) {
    float x[V];
    load<V>(row + c * V, x);
#pragma unroll
    for (int k = 0; k < V; ++k) m = fmaxf(m, x[k]);
  }
  m = block_max_ce(m, shared);
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < nv; c += kCeThreads) {
    float x[V];
    load<V>(row + c * V, x);
#pragma unroll
    for (int k = 0; k < V; ++k) sum += expf(x[k] - m);
  }
  const float logsum = logf(block_sum_ce(sum, shared));
  const int64_t t = targets[blockIdx.x];
  __syncthreads();  // every thread has read the target's logit below before anyone overwrites the row
  if (threadIdx.x == 0) row_logp[blockIdx.x] = f(row[t]) - m - logsum;
  __syncthreads();
  for (int64_t c = threadIdx.x; c < nv; c += kCeThreads) {
    float x[V];
    load<V>(row + c * V, x);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      x[k] = expf(x[k] - m - logsum) * scale;
      if (c * V + k == t) x[k] += -scale;
    }
    store<V>(row + c * V, x);
  }
}

unsigned blocks_for(int64_t work, int threads) { return static_cast<unsigned>((work + threads - 1) / threads); }

}  // namespace

int max_norm_width() { return kNormThreads * 8 * kNormVecs; }

cudaError_t swiglu_fwd(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  swiglu_fwd_kernel<<<blocks_for((n + 7) / 8, 256), 256, 0, stream>>>(static_cast<const bf16*>(gate),
                                                                      static_cast<const bf16*>(up),
                                                                      static_cast<bf16*>(out), n);
  return cudaGetLastError();
}

cudaError_t swiglu_bwd(void* dp, void* gate, void* up, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  swiglu_bwd_kernel<<<blocks_for((n + 7) / 8, 256), 256, 0, stream>>>(static_cast<bf16*>(dp), static_cast<bf16*>(gate),
                                                                      static_cast<bf16*>(up), n);
  return cudaGetLastError();
}

namespace {
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
}  // namespace

cudaError_t rope_fwd(void* qkv, const void* cos, const void* sin, int64_t T, int64_t S, int64_t ld, int heads, int D,
                     cudaStream_t stream) {
  const bool vec = (D / 2) % 8 == 0 && ld % 8 == 0 && aligned16(qkv) && aligned16(cos) && aligned16(sin);
  const int V = vec ? 8 : 1;
  const int64_t work = T * heads * (D / 2 / V);
  if (work == 0) return cudaSuccess;
  auto args = [&](auto kernel) {
    kernel<<<blocks_for(work, 256), 256, 0, stream>>>(static_cast<bf16*>(qkv), static_cast<const bf16*>(cos),
                                                      static_cast<const bf16*>(sin), T, S, ld, heads, D);
  };
  if (vec) args(rope_fwd_kernel<8>);
  else args(rope_fwd_kernel<1>);
  return cudaGetLastError();
}

cudaError_t rope_bwd(const StridedBSND& dq, const StridedBSND& dk, const StridedBSND& dv, const void* cos,
                     const void* sin, void* out, int64_t T, int64_t S, int64_t ld, int nq, int nkv, int D,
                     cudaStream_t stream) {
  auto ok = [](const StridedBSND& x) { return aligned16(x.data) && x.sb % 8 == 0 && x.ss % 8 == 0 && x.sn % 8 == 0; };
  const bool vec = (D / 2) % 8 == 0 && ld % 8 == 0 && ok(dq) && ok(dk) && ok(dv) && aligned16(cos) && aligned16(sin) &&
                   aligned16(out);
  const int V = vec ? 8 : 1;
  const int64_t work = T * (nq + 2 * nkv) * (D / 2 / V);
  if (work == 0) return cudaSuccess;
  auto cv = [](const StridedBSND& s) { return Strided4{static_cast<const bf16*>(s.data), s.sb, s.ss, s.sn}; };
  auto args = [&](auto kernel) {
    kernel<<<blocks_for(work, 256), 256, 0, stream>>>(cv(dq), cv(dk), cv(dv), static_cast<const bf16*>(cos),
                                                      static_cast<const bf16*>(sin), static_cast<bf16*>(out), T, S, ld,
                                                      nq, nkv, D);
  };
  if (vec) args(rope_bwd_kernel<8>);
  else args(rope_bwd_kernel<1>);
  return cudaGetLastError();
}

cudaError_t rms_fwd(const void* x, const void* res, void* sum_out, const void* w, void* y, float* rstd, int64_t T, int H,
                    float eps, cudaStream_t stream) {
  if (T == 0) return cudaSuccess;
  rms_fwd_kernel<<<static_cast<unsigned>(T), kNormThreads, 0, stream>>>(
      static_cast<const bf16*>(x), static_cast<const bf16*>(res), static_cast<bf16*>(sum_out),
      static_cast<const bf16*>(w), static_cast<bf16*>(y), rstd, H, eps);
  return cudaGetLastError();
}

int64_t rms_bwd_blocks(int64_t T, int rows) { return (T + rows - 1) / rows; }

cudaError_t rms_bwd(const void* g, const void* x, const void* w, const float* rstd, const void* dres, void* dx,
                    float* dw_partial, int64_t T, int H, int rows, cudaStream_t stream) {
  if (T == 0) return cudaSuccess;
  const int threads = ((H / 8 + 31) / 32) * 32;  // H <= max_norm_width(): at most 512
  const unsigned blocks = static_cast<unsigned>(rms_bwd_blocks(T, rows));
  auto launch = [&](auto kernel) {
    kernel<<<blocks, threads, 0, stream>>>(static_cast<const bf16*>(g), static_cast<const bf16*>(x),
                                           static_cast<const bf16*>(w), rstd, static_cast<const bf16*>(dres),
                                           static_cast<bf16*>(dx), dw_partial, T, H, rows);
  };
  if (threads <= 448) launch(rms_bwd_kernel<448, 2>);
  else launch(rms_bwd_kernel<1024, 1>);
  return cudaGetLastError();
}

cudaError_t ce_grad(void* logits, const int64_t* targets, float* row_logp, int64_t rows, int64_t vocab, float scale,
                    cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (vocab % 8 == 0 && aligned16(logits)) {
    ce_grad_kernel<8><<<static_cast<unsigned>(rows), kCeThreads, 0, stream>>>(static_cast<bf16*>(logits), targets,
                                                                               row_logp, vocab, scale);
  } else {
    ce_grad_kernel<1><<<static_cast<unsigned>(rows), kCeThreads, 0, stream>>>(static_cast<bf16*>(logits), targets,
                                                                               row_logp, vocab, scale);
  }
  return cudaGetLastError();
}

cudaError_t sum_terms(const void* x, void* out, int64_t n, int terms, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const auto* in = static_cast<const bf16*>(x);
  if (n % 8 == 0 && aligned16(x) && aligned16(out)) {
    sum_terms_kernel<8><<<blocks_for(n / 8, 256), 256, 0, stream>>>(in, static_cast<bf16*>(out), n, terms);
  } else {
    sum_terms_kernel<1><<<blocks_for(n, 256), 256, 0, stream>>>(in, static_cast<bf16*>(out), n, terms);
  }
  return cudaGetLastError();
}

cudaError_t accumulate(float* acc, const void* x, void* out, int64_t n, int mode, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n % 8 == 0 && aligned16(acc) && aligned16(x) && (mode != 2 || aligned16(out))) {
    accumulate_kernel<8><<<blocks_for(n / 8, 256), 256, 0, stream>>>(acc, static_cast<const bf16*>(x),
                                                                       static_cast<bf16*>(out), n, mode);
  } else {
    accumulate_kernel<1><<<blocks_for(n, 256), 256, 0, stream>>>(acc, static_cast<const bf16*>(x),
                                                                   static_cast<bf16*>(out), n, mode);
  }
  return cudaGetLastError();
}

namespace {

// One element of AdamW (ADAMW mode) with PyTorch's fused kernel's steps
// (adam_math in fused_adam_utils.cuh), all in float: that kernel takes lr,
// the betas, weight decay and eps in double and so does most of its arithmetic
// in double (and this kernel's first version, which copied it, ran at about
// 2.6 TB/s on the H200, as did PyTorch's). Here the hyper-parameter terms are
// rounded to float once, on the host: no float64 instruction in the kernel.
// The float results differ from the double ones by about one float ulp, far
// under the bf16 rounding each value gets on its store.
struct AdamWConsts {
  float decay;      // 1 - lr * weight_decay
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;  // lr / bias_correction1
  float bc2_sqrt, eps;
};

__device__ __forceinline__ void adamw_one(float& param, float grad, float& exp_avg, float& exp_avg_sq,
                                          const AdamWConsts& c) {
  param *= c.decay;
  exp_avg = c.beta1 * exp_avg + c.one_minus_beta1 * grad;
  exp_avg_sq = c.beta2 * exp_avg_sq + c.one_minus_beta2 * grad * grad;
  const float denom = (sqrtf(exp_avg_sq) / c.bc2_sqrt) + c.eps;
  param -= c.step_size * exp_avg / denom;
}

// Fresh: the moments start at zero and are not read (step 1 of moments that
// may be uninitialised memory); beta * 0 + x is x, so the result is that of
// zero moments read.
template <int V, bool Fresh>
__global__ void adamw_kernel(bf16* __restrict__ p, const bf16* __restrict__ g, bf16* __restrict__ m,
                             bf16* __restrict__ v, int64_t n, AdamWConsts c) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x * V;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V; i < n; i += stride) {
    if constexpr (V == 8) {
      V8 pp = *reinterpret_cast<const V8*>(p + i), gg = *reinterpret_cast<const V8*>(g + i), mm, vv;
      if constexpr (!Fresh) {
        mm = *reinterpret_cast<const V8*>(m + i);
        vv = *reinterpret_cast<const V8*>(v + i);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        float a = f(pp.v[k]), e = Fresh ? 0.f : f(mm.v[k]), s = Fresh ? 0.f : f(vv.v[k]);
        adamw_one(a, f(gg.v[k]), e, s, c);
        pp.v[k] = b(a);
        mm.v[k] = b(e);
        vv.v[k] = b(s);
      }
      *reinterpret_cast<V8*>(p + i) = pp;
      *reinterpret_cast<V8*>(m + i) = mm;
      *reinterpret_cast<V8*>(v + i) = vv;
    } else {
      float a = f(p[i]), e = Fresh ? 0.f : f(m[i]), s = Fresh ? 0.f : f(v[i]);
      adamw_one(a, f(g[i]), e, s, c);
      p[i] = b(a);
      m[i] = b(e);
      v[i] = b(s);
    }
  }
}

}  // namespace

cudaError_t adamw(void* p, const void* g, void* m, void* v, int64_t n, double lr, double beta1, double beta2,
                  double weight_decay, double eps, float bc1, float bc2_sqrt, bool fresh, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  int device = 0, sms = 132;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const AdamWConsts c{static_cast<float>(1.0 - lr * weight_decay),
                      static_cast<float>(beta1),
                      static_cast<float>(1.0 - beta1),
                      static_cast<float>(beta2),
                      static_cast<float>(1.0 - beta2),
                      static_cast<float>(lr / static_cast<double>(bc1)),  // as the fused kernel: lr / the float bias correction
                      bc2_sqrt,
                      static_cast<float>(eps)};
  const int64_t cap = static_cast<int64_t>(sms) * 8;  // 8 blocks of 256 per multiprocessor, grid-stride beyond
  auto launch = [&](auto kernel, int64_t work) {
    const int64_t blocks = std::min<int64_t>(blocks_for(work, 256), cap);
    kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(static_cast<bf16*>(p), static_cast<const bf16*>(g),
                                                              static_cast<bf16*>(m), static_cast<bf16*>(v), n, c);
  };
  if (n % 8 == 0 && aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v)) {
    if (fresh) launch(adamw_kernel<8, true>, n / 8);
    else launch(adamw_kernel<8, false>, n / 8);
  } else {
    if (fresh) launch(adamw_kernel<1, true>, n);
    else launch(adamw_kernel<1, false>, n);
  }
  return cudaGetLastError();
}

}  // namespace tournament::kernels::cuda
