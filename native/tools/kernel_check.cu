// Checks and times two of the fused kernels (fused.cu) against their previous
// versions, kept here as references, on random data on the GPU:
//   rms_bwd: the RMSNorm backward (one 8-column vector a thread, next row's
//            loads in flight) against the two-vectors-a-thread kernel it
//            replaced; dx compared element by element (the row's dot is summed
//            in another order, so a few one-ulp differences are expected), the
//            weight's partial sums bit for bit;
//   adamw:   the float-math AdamW against the double-math copy of PyTorch's
//            fused kernel it replaced; p, m, v compared after three steps.
// Each timed as the median of 20 launches (CUDA events).
//   nvcc -arch=sm_90 -O3 -std=c++17 -o /tmp/kernel_check native/tools/kernel_check.cu && /tmp/kernel_check
// Exit status 0 when every compared tensor differs in at most 1 of 100
// elements, by at most 1% of its largest magnitude; 1 otherwise. (First call,
// 2026-12-04 06:13 UTC, with a one-ulp limit instead: the differences sat where
// sums cancel to near zero, 16 to 26,829 bf16 ulps there; AdamW's exp_avg
// differed in 0.4% of its elements after three steps, p in 0.0013%.)
#include "../src/kernels/fused.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace tk = tournament::kernels::cuda;
using tk::bf16;
using tk::V8;

namespace {

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                             \
    }                                                                                           \
  } while (0)

__device__ __forceinline__ float ff(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 bb(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ float rrb(float x) { return ff(bb(x)); }

__device__ __forceinline__ uint32_t mix(uint64_t i, uint32_t seed) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>(z ^ (z >> 31));
}
// uniform in [lo, hi)
__global__ void fill_bf16(bf16* p, int64_t n, uint32_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = bb(lo + (hi - lo) * (mix(i, seed) >> 8) * (1.0f / 16777216.0f));
}
__global__ void fill_f32(float* p, int64_t n, uint32_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = lo + (hi - lo) * (mix(i, seed) >> 8) * (1.0f / 16777216.0f);
}

// ---- the previous RMSNorm backward (commit 518abd9), verbatim but for names
constexpr int kT = 256, kVecs = 2;
__device__ __forceinline__ float ref_block_sum(float v, float* shared) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kT / 32; ++w) total += shared[w];
  return total;
}
__global__ void __launch_bounds__(kT) ref_rms_bwd_kernel(const bf16* __restrict__ g, const bf16* __restrict__ x,
                                                         const bf16* __restrict__ w, const float* __restrict__ rstd,
                                                         const bf16* __restrict__ dres, bf16* __restrict__ dx,
                                                         float* __restrict__ dw_partial, int64_t T, int H, int rows) {
  __shared__ float shared[kT / 32];
  const int nvec = H / 8;
  float acc[kVecs][8];
  float wf[kVecs][8];
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int c = (threadIdx.x + j * kT);
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[j][k] = 0.f;
    if (c < nvec) {
      V8 wv = *reinterpret_cast<const V8*>(w + c * 8);
#pragma unroll
      for (int k = 0; k < 8; ++k) wf[j][k] = ff(wv.v[k]);
    }
  }
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows;
  for (int64_t row = r0; row < r0 + rows && row < T; ++row) {
    const float rs = rstd[row];
    float dn[kVecs][8], nf[kVecs][8];
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c = (threadIdx.x + j * kT);
      if (c < nvec) {
        V8 gv = *reinterpret_cast<const V8*>(g + row * H + c * 8), xv = *reinterpret_cast<const V8*>(x + row * H + c * 8);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float gk = ff(gv.v[k]);
          nf[j][k] = ff(xv.v[k]) * rs;
          dn[j][k] = rrb(gk * wf[j][k]);
          dot += dn[j][k] * nf[j][k];
          acc[j][k] += rrb(gk * rrb(nf[j][k]));
        }
      }
    }
    const float mean = ref_block_sum(dot, shared) * (1.0f / static_cast<float>(H));
#pragma unroll
    for (int j = 0; j < kVecs; ++j) {
      const int c = (threadIdx.x + j * kT);
      if (c < nvec) {
        V8 o;
        if (dres) {
          V8 rv = *reinterpret_cast<const V8*>(dres + row * H + c * 8);
#pragma unroll
          for (int k = 0; k < 8; ++k) o.v[k] = bb(ff(rv.v[k]) + rrb(rs * (dn[j][k] - nf[j][k] * mean)));
        } else {
#pragma unroll
          for (int k = 0; k < 8; ++k) o.v[k] = bb(rs * (dn[j][k] - nf[j][k] * mean));
        }
        *reinterpret_cast<V8*>(dx + row * H + c * 8) = o;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kVecs; ++j) {
    const int c = (threadIdx.x + j * kT);
    if (c < nvec) {
#pragma unroll
      for (int k = 0; k < 8; ++k) dw_partial[static_cast<int64_t>(blockIdx.x) * H + c * 8 + k] = acc[j][k];
    }
  }
}

// ---- the previous AdamW (commit 518abd9): PyTorch's fused kernel's double math
__device__ __forceinline__ void ref_adamw_one(float& param, float grad, float& exp_avg, float& exp_avg_sq, double lr,
                                              double beta1, double beta2, double weight_decay, double eps, float bc1,
                                              float bc2_sqrt) {
  if (weight_decay != 0) param -= lr * weight_decay * param;
  exp_avg = beta1 * exp_avg + (1 - beta1) * grad;
  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad;
  const float step_size = lr / bc1;
  const float denom = (sqrtf(exp_avg_sq) / bc2_sqrt) + eps;
  param -= step_size * exp_avg / denom;
}
__global__ void ref_adamw_kernel(bf16* __restrict__ p, const bf16* __restrict__ g, bf16* __restrict__ m,
                                 bf16* __restrict__ v, int64_t n, double lr, double beta1, double beta2,
                                 double weight_decay, double eps, float bc1, float bc2_sqrt) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x * 8;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8; i < n; i += stride) {
    V8 pp = *reinterpret_cast<const V8*>(p + i), gg = *reinterpret_cast<const V8*>(g + i),
       mm = *reinterpret_cast<const V8*>(m + i), vv = *reinterpret_cast<const V8*>(v + i);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      float a = ff(pp.v[k]), e = ff(mm.v[k]), s = ff(vv.v[k]);
      ref_adamw_one(a, ff(gg.v[k]), e, s, lr, beta1, beta2, weight_decay, eps, bc1, bc2_sqrt);
      pp.v[k] = bb(a);
      mm.v[k] = bb(e);
      vv.v[k] = bb(s);
    }
    *reinterpret_cast<V8*>(p + i) = pp;
    *reinterpret_cast<V8*>(m + i) = mm;
    *reinterpret_cast<V8*>(v + i) = vv;
  }
}

// Differences between two bf16 arrays: how many differ, the largest absolute
// difference and the largest magnitude of `a` (non-negative floats compare as
// their bit patterns). Units of the last place mislead here: a one-ulp float
// difference in a sum that cancels to near zero is thousands of bf16 ulps
// there, and nothing in absolute terms.
__global__ void diff_bf16(const bf16* a, const bf16* b, int64_t n, unsigned long long* count, unsigned int* max_abs,
                          unsigned int* max_ref) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float x = ff(a[i]), y = ff(b[i]);
    atomicMax(max_ref, __float_as_uint(fabsf(x)));
    if (__bfloat16_as_ushort(a[i]) != __bfloat16_as_ushort(b[i])) {
      atomicAdd(count, 1ull);
      const float d = fabsf(x - y);
      atomicMax(max_abs, __float_as_uint(d != d ? INFINITY : d));
    }
  }
}
__global__ void diff_f32(const float* a, const float* b, int64_t n, unsigned long long* count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (__float_as_uint(a[i]) != __float_as_uint(b[i])) atomicAdd(count, 1ull);
}

struct Diff {
  unsigned long long count;
  float max_abs, max_ref;
  bool within(int64_t n) const { return count <= static_cast<unsigned long long>(n / 100) && max_abs <= 1e-2f * max_ref; }
};
Diff compare(const bf16* a, const bf16* b, int64_t n) {
  unsigned long long* c;
  unsigned* m;
  CK(cudaMalloc(&c, 8));
  CK(cudaMalloc(&m, 8));
  CK(cudaMemset(c, 0, 8));
  CK(cudaMemset(m, 0, 8));
  diff_bf16<<<1024, 256>>>(a, b, n, c, m, m + 1);
  CK(cudaGetLastError());
  Diff d;
  unsigned u[2];
  CK(cudaMemcpy(&d.count, c, 8, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(u, m, 8, cudaMemcpyDeviceToHost));
  std::memcpy(&d.max_abs, &u[0], 4);
  std::memcpy(&d.max_ref, &u[1], 4);
  CK(cudaFree(c));
  CK(cudaFree(m));
  return d;
}
unsigned long long compare_f32(const float* a, const float* b, int64_t n) {
  unsigned long long* c;
  CK(cudaMalloc(&c, 8));
  CK(cudaMemset(c, 0, 8));
  diff_f32<<<1024, 256>>>(a, b, n, c);
  CK(cudaGetLastError());
  unsigned long long r;
  CK(cudaMemcpy(&r, c, 8, cudaMemcpyDeviceToHost));
  CK(cudaFree(c));
  return r;
}

template <class F>
float median_ms(F&& launch, int reps = 20) {
  for (int i = 0; i < 3; ++i) launch();
  CK(cudaDeviceSynchronize());
  std::vector<float> ts;
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

template <class T>
T* dalloc(int64_t n) {
  T* p;
  CK(cudaMalloc(&p, n * sizeof(T)));
  return p;
}

}  // namespace

int main() {
  bool ok = true;
  // ---- RMSNorm backward, Qwen2.5-7B's width, 16 x 1024 tokens, 16 rows a block (kernels.cpp)
  {
    const int64_t T = 16384;
    const int H = 3584, rows = 16;
    const int64_t n = T * H, blocks = tk::rms_bwd_blocks(T, rows);
    bf16 *g = dalloc<bf16>(n), *x = dalloc<bf16>(n), *r = dalloc<bf16>(n), *w = dalloc<bf16>(H);
    bf16 *dx_ref = dalloc<bf16>(n), *dx_new = dalloc<bf16>(n);
    float *rstd = dalloc<float>(T), *p_ref = dalloc<float>(blocks * H), *p_new = dalloc<float>(blocks * H);
    fill_bf16<<<1024, 256>>>(g, n, 1, -0.05f, 0.05f);
    fill_bf16<<<1024, 256>>>(x, n, 2, -3.f, 3.f);
    fill_bf16<<<1024, 256>>>(r, n, 3, -0.05f, 0.05f);
    fill_bf16<<<64, 256>>>(w, H, 4, 0.5f, 1.5f);
    fill_f32<<<64, 256>>>(rstd, T, 5, 0.3f, 1.5f);
    CK(cudaGetLastError());
    for (int with_res = 1; with_res >= 0; --with_res) {
      const bf16* dres = with_res ? r : nullptr;
      CK(cudaMemset(dx_new, 0xff, n * 2));  // poison: NaN patterns where nothing writes
      CK(cudaMemset(p_new, 0xff, blocks * H * 4));
      auto ref = [&] {
        ref_rms_bwd_kernel<<<blocks, kT>>>(g, x, w, rstd, dres, dx_ref, p_ref, T, H, rows);
      };
      auto neu = [&] { CK(tk::rms_bwd(g, x, w, rstd, dres, dx_new, p_new, T, H, rows, 0)); };
      ref();
      neu();
      CK(cudaDeviceSynchronize());
      const Diff d = compare(dx_ref, dx_new, n);
      const auto pd = compare_f32(p_ref, p_new, blocks * H);
      const float t_ref = median_ms(ref), t_new = median_ms(neu);
      const double bytes = double(n) * 2 * (with_res ? 4 : 3);
      const bool pass = d.within(n) && pd == 0;
      ok = ok && pass;
      std::printf("rms_bwd %s: dx differs in %llu of %lld (largest difference %.3g, largest |dx| %.3g), dw partials differ in %llu: %s; "
                  "old %.3f ms (%.0f GB/s), new %.3f ms (%.0f GB/s)\n",
                  with_res ? "with dres" : "no dres  ", d.count, static_cast<long long>(n), d.max_abs, d.max_ref, pd,
                  pass ? "ok" : "FAIL", t_ref, bytes / t_ref / 1e6, t_new, bytes / t_new / 1e6);
    }
    for (void* p : std::vector<void*>{g, x, r, w, dx_ref, dx_new, rstd, p_ref, p_new}) CK(cudaFree(p));
  }
  // ---- AdamW on one lm_head-sized tensor, three steps from zero moments
  {
    const int64_t n = 152064LL * 3584;
    bf16 *p1 = dalloc<bf16>(n), *m1 = dalloc<bf16>(n), *v1 = dalloc<bf16>(n);
    bf16 *p2 = dalloc<bf16>(n), *m2 = dalloc<bf16>(n), *v2 = dalloc<bf16>(n), *g = dalloc<bf16>(n);
    fill_bf16<<<1024, 256>>>(p1, n, 11, -0.06f, 0.06f);
    CK(cudaMemcpy(p2, p1, n * 2, cudaMemcpyDeviceToDevice));
    CK(cudaMemset(m1, 0, n * 2));
    CK(cudaMemset(v1, 0, n * 2));
    CK(cudaMemset(m2, 0, n * 2));
    CK(cudaMemset(v2, 0, n * 2));
    const double lr = 1e-4, b1 = 0.9, b2 = 0.95, wd = 0.1, eps = 1e-8;
    int sms = 132;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const int64_t ref_blocks = std::min<int64_t>((n / 8 + 255) / 256, int64_t(sms) * 8);
    for (int step = 1; step <= 3; ++step) {
      fill_bf16<<<1024, 256>>>(g, n, 100 + step, -1e-3f, 1e-3f);
      const float bc1 = static_cast<float>(1.0 - std::pow(b1, step));
      const float bc2s = static_cast<float>(std::sqrt(1.0 - std::pow(b2, step)));
      ref_adamw_kernel<<<ref_blocks, 256>>>(p1, g, m1, v1, n, lr, b1, b2, wd, eps, bc1, bc2s);
      CK(tk::adamw(p2, g, m2, v2, n, lr, b1, b2, wd, eps, bc1, bc2s, false, 0));
    }
    CK(cudaDeviceSynchronize());
    const Diff dp = compare(p1, p2, n), dm = compare(m1, m2, n), dv = compare(v1, v2, n);
    const bool pass = dp.within(n) && dm.within(n) && dv.within(n);
    ok = ok && pass;
    std::printf("adamw 3 steps, n %lld: p differs in %llu (largest difference %.3g, largest |p| %.3g), m in %llu "
                "(%.3g, %.3g), v in %llu (%.3g, %.3g): %s\n",
                static_cast<long long>(n), dp.count, dp.max_abs, dp.max_ref, dm.count, dm.max_abs, dm.max_ref, dv.count,
                dv.max_abs, dv.max_ref, pass ? "ok" : "FAIL");
    const float bc1 = 0.19f, bc2s = 0.3f;
    const float t_ref = median_ms([&] { ref_adamw_kernel<<<ref_blocks, 256>>>(p1, g, m1, v1, n, lr, b1, b2, wd, eps, bc1, bc2s); });
    const float t_new = median_ms([&] { CK(tk::adamw(p2, g, m2, v2, n, lr, b1, b2, wd, eps, bc1, bc2s, false, 0)); });
    const double bytes = double(n) * 14;
    std::printf("adamw time: old (double math) %.3f ms (%.0f GB/s), new (float) %.3f ms (%.0f GB/s)\n", t_ref,
                bytes / t_ref / 1e6, t_new, bytes / t_new / 1e6);
    for (void* p : std::vector<void*>{p1, m1, v1, p2, m2, v2, g}) CK(cudaFree(p));
  }
  CK(cudaGetLastError());
  std::printf("kernel_check: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
