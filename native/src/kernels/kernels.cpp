// tournament/kernels.h: shape checks, the fused CUDA kernels where they apply
// (CUDA build, bf16, contiguous, 16-byte aligned rows), libtorch ops elsewhere.
#include <tournament/kernels.h>
#include <tournament/optim.h>

#include <cmath>
#include <limits>

#ifdef TOURNAMENT_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAStream.h>

#include "fused_launch.h"
#endif

namespace tournament::kernels {

using torch::Tensor;

namespace {

#ifdef TOURNAMENT_WITH_CUDA_KERNELS
bool aligned(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }
bool fusable(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!t->is_cuda() || t->scalar_type() != torch::kBFloat16 || !t->is_contiguous() || !aligned(*t)) return false;
  }
  return true;
}
cudaStream_t stream_of(const Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.get_device()).stream(); }
void check(cudaError_t e, const char* what) {
  TORCH_CHECK(e == cudaSuccess, "tournament::kernels::", what, ": ", cudaGetErrorString(e));
}
#endif

Tensor rotate_half(const Tensor& x) {  // [..., D]: [-x2, x1]
  auto h = x.chunk(2, -1);
  return torch::cat({-h[1], h[0]}, -1);
}

}  // namespace

bool fused_available() {
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

Tensor rms_norm(const Tensor& x, const Tensor& w, double eps, Tensor* rstd, const Tensor& residual, Tensor* sum_out) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 1 && w.size(0) == x.size(1), "rms_norm: x [T, H], w [H]");
  TORCH_CHECK(!residual.defined() || residual.sizes() == x.sizes(), "rms_norm: residual must match x");
  const int64_t T = x.size(0), H = x.size(1);
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&x, &w, &residual}) && H % 8 == 0 && H <= cuda::max_norm_width()) {
    auto y = torch::empty_like(x);
    *rstd = torch::empty({T}, x.options().dtype(torch::kFloat32));
    Tensor s;
    if (residual.defined()) s = torch::empty_like(x);
    check(cuda::rms_fwd(x.data_ptr(), residual.defined() ? residual.data_ptr() : nullptr,
                        s.defined() ? s.data_ptr() : nullptr, w.data_ptr(), y.data_ptr(), rstd->data_ptr<float>(), T,
                        static_cast<int>(H), static_cast<float>(eps), stream_of(x)),
          "rms_norm");
    if (sum_out) *sum_out = residual.defined() ? s : x;
    return y;
  }
#endif
  auto s = residual.defined() ? x + residual : x;  // [T, H], rounded once
  if (sum_out) *sum_out = s;
  auto sf = s.to(torch::kFloat32);
  auto r = torch::rsqrt(sf.pow(2).mean(-1, /*keepdim=*/true) + eps);  // [T, 1]
  *rstd = r.squeeze(1);
  return w * (sf * r).to(x.scalar_type());
}

Tensor rms_norm_backward(const Tensor& g, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor* dw,
                         const Tensor& residual_grad) {
  TORCH_CHECK(x.dim() == 2 && g.sizes() == x.sizes() && rstd.dim() == 1 && rstd.size(0) == x.size(0),
              "rms_norm_backward: g, x [T, H], rstd [T]");
  const int64_t T = x.size(0), H = x.size(1);
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&g, &x, &w, &residual_grad}) && rstd.is_contiguous() && rstd.scalar_type() == torch::kFloat32 &&
      H % 8 == 0 && H <= cuda::max_norm_width()) {
    constexpr int kRows = 16;  // rows per block: T / 16 partial sums of the weight's gradient (more blocks in flight)
    auto dx = torch::empty_like(x);
    auto partial = torch::empty({cuda::rms_bwd_blocks(T, kRows), H}, x.options().dtype(torch::kFloat32));
    check(cuda::rms_bwd(g.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(),
                        residual_grad.defined() ? residual_grad.data_ptr() : nullptr, dx.data_ptr(),
                        partial.data_ptr<float>(), T, static_cast<int>(H), kRows, stream_of(x)),
          "rms_norm_backward");
    *dw = partial.sum(0).to(w.scalar_type());  // [H]
    return dx;
  }
#endif
  auto r = rstd.unsqueeze(1);                                   // [T, 1]
  auto nf = x.to(torch::kFloat32) * r;                          // normalised, float32
  *dw = (g * nf.to(x.scalar_type())).sum(0);                    // [H]
  auto dn = (g * w).to(torch::kFloat32);
  auto dx = (r * (dn - nf * (dn * nf).mean(-1, /*keepdim=*/true))).to(x.scalar_type());
  return residual_grad.defined() ? residual_grad + dx : dx;
}

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  TORCH_CHECK(gate.sizes() == up.sizes(), "swiglu: gate and up differ in shape");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&gate, &up})) {
    auto out = torch::empty_like(gate);
    check(cuda::swiglu_fwd(gate.data_ptr(), up.data_ptr(), out.data_ptr(), gate.numel(), stream_of(gate)), "swiglu");
    return out;
  }
#endif
  return torch::silu(gate) * up;
}

void swiglu_backward_(Tensor& dp, Tensor& gate, Tensor& up) {
  TORCH_CHECK(gate.sizes() == up.sizes() && dp.sizes() == gate.sizes(), "swiglu_backward_: shapes differ");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&dp, &gate, &up})) {
    check(cuda::swiglu_bwd(dp.data_ptr(), gate.data_ptr(), up.data_ptr(), gate.numel(), stream_of(gate)),
          "swiglu_backward_");
    return;
  }
#endif
  auto sg = torch::silu(gate);
  auto prod = sg * up;
  auto d_up = dp * sg;
  auto d_gate = torch::silu_backward(dp * up, gate);
  dp.copy_(prod);
  gate.copy_(d_gate);
  up.copy_(d_up);
}

void rope_qkv_(Tensor& qkv, const Tensor& cos, const Tensor& sin, int64_t S, int64_t Nq, int64_t Nkv, int64_t D) {
  TORCH_CHECK(qkv.dim() == 2 && qkv.size(1) == (Nq + 2 * Nkv) * D && qkv.size(0) % S == 0 && D % 2 == 0,
              "rope_qkv_: qkv [B * S, (Nq + 2 Nkv) D]");
  TORCH_CHECK(cos.sizes() == at::IntArrayRef({S, D}) && sin.sizes() == cos.sizes(), "rope_qkv_: cos, sin [S, D]");
  const int64_t T = qkv.size(0);
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&qkv, &cos, &sin})) {
    check(cuda::rope_fwd(qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), T, S, qkv.size(1), static_cast<int>(Nq + Nkv),
                         static_cast<int>(D), stream_of(qkv)),
          "rope_qkv_");
    return;
  }
#endif
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);                        // [S, 1, D]
  auto qk = qkv.narrow(1, 0, (Nq + Nkv) * D).view({T / S, S, Nq + Nkv, D});  // [B, S, Nq + Nkv, D]
  auto rotated = qk * c + rotate_half(qk) * s;
  qk.copy_(rotated);
}

Tensor rope_qkv_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& cos, const Tensor& sin) {
  TORCH_CHECK(dq.dim() == 4 && dk.dim() == 4 && dv.sizes() == dk.sizes() && dq.size(0) == dk.size(0) &&
                  dq.size(1) == dk.size(1) && dq.size(3) == dk.size(3),
              "rope_qkv_backward: dq [B, S, Nq, D], dk and dv [B, S, Nkv, D]");
  const int64_t B = dq.size(0), S = dq.size(1), Nq = dq.size(2), Nkv = dk.size(2), D = dq.size(3);
  const int64_t ld = (Nq + 2 * Nkv) * D;
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  auto dense_d = [](const Tensor& t) {
    return t.is_cuda() && t.scalar_type() == torch::kBFloat16 && t.stride(3) == 1;
  };
  if (dense_d(dq) && dense_d(dk) && dense_d(dv) && fusable({&cos, &sin})) {
    auto out = torch::empty({B * S, ld}, dq.options());
    auto st = [](const Tensor& t) { return cuda::StridedBSND{t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)}; };
    check(cuda::rope_bwd(st(dq), st(dk), st(dv), cos.data_ptr(), sin.data_ptr(), out.data_ptr(), B * S, S, ld,
                         static_cast<int>(Nq), static_cast<int>(Nkv), static_cast<int>(D), stream_of(dq)),
          "rope_qkv_backward");
    return out;
  }
#endif
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);  // [S, 1, D]
  auto back = [&](const Tensor& g) {                // g cos + R^T(g sin), R^T(z) = [z2, -z1]
    auto h = (g * s).chunk(2, -1);
    return g * c + torch::cat({h[1], -h[0]}, -1);
  };
  return torch::cat({back(dq).reshape({B * S, Nq * D}), back(dk).reshape({B * S, Nkv * D}),
                     dv.reshape({B * S, Nkv * D})},
                    1);
}

void cross_entropy_grad_(Tensor& logits, const Tensor& targets, double scale, Tensor& row_logp) {
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0) &&
                  row_logp.sizes() == targets.sizes() && row_logp.scalar_type() == torch::kFloat32,
              "cross_entropy_grad_: logits [n, V], targets [n], row_logp [n] float32");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&logits}) && targets.is_cuda() && targets.scalar_type() == torch::kInt64 && targets.is_contiguous() &&
      row_logp.is_cuda() && row_logp.is_contiguous()) {
    check(cuda::ce_grad(logits.data_ptr(), targets.data_ptr<int64_t>(), row_logp.data_ptr<float>(), logits.size(0),
                        logits.size(1), static_cast<float>(scale), stream_of(logits)),
          "cross_entropy_grad_");
    return;
  }
#endif
  auto t = targets.unsqueeze(1);                                   // [n, 1]
  auto logp = torch::log_softmax(logits.to(torch::kFloat32), 1);  // [n, V]
  row_logp.copy_(logp.gather(1, t).squeeze(1));
  auto grad = logp.exp_().mul_(scale);
  grad.scatter_add_(1, t, torch::full({logits.size(0), 1}, -scale, grad.options()));
  logits.copy_(grad);
}

void accumulate_(Tensor& acc, const Tensor& x, bool first) {
  TORCH_CHECK(acc.sizes() == x.sizes() && acc.scalar_type() == torch::kFloat32 && acc.is_contiguous(),
              "accumulate_: acc float32 contiguous, x of its shape");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&x}) && acc.is_cuda()) {
    check(cuda::accumulate(acc.data_ptr<float>(), x.data_ptr(), nullptr, x.numel(), first ? 0 : 1, stream_of(x)),
          "accumulate_");
    return;
  }
#endif
  if (first) acc.copy_(x);
  else acc.add_(x);
}

Tensor accumulate_finish(const Tensor& acc, const Tensor& x) {
  TORCH_CHECK(acc.sizes() == x.sizes() && acc.scalar_type() == torch::kFloat32 && acc.is_contiguous(),
              "accumulate_finish: acc float32 contiguous, x of its shape");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&x}) && acc.is_cuda()) {
    auto out = torch::empty_like(x);
    check(cuda::accumulate(const_cast<float*>(acc.data_ptr<float>()), x.data_ptr(), out.data_ptr(), x.numel(), 2,
                           stream_of(x)),
          "accumulate_finish");
    return out;
  }
#endif
  return (acc + x).to(x.scalar_type());
}

Tensor sum_terms(const Tensor& x) {
  TORCH_CHECK(x.dim() >= 1 && x.size(0) >= 1, "sum_terms: x [terms, ...] with at least one term");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&x}) && x.size(0) <= std::numeric_limits<int>::max()) {
    auto out = torch::empty(x.sizes().slice(1), x.options());
    check(cuda::sum_terms(x.data_ptr(), out.data_ptr(), out.numel(), static_cast<int>(x.size(0)), stream_of(x)),
          "sum_terms");
    return out;
  }
#endif
  return x.sum(0, /*keepdim=*/false, torch::kFloat32).to(x.scalar_type());
}

namespace {

// One AdamW step; `fresh`: m and v start at zero and are not read (step 1).
void adamw(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, int64_t step, double lr, double beta1, double beta2,
           double weight_decay, double eps, bool fresh, const char* what) {
  TORCH_CHECK(g.sizes() == p.sizes() && m.sizes() == p.sizes() && v.sizes() == p.sizes() && step >= 1, what,
              ": p, g, m, v of one shape, step >= 1");
#ifdef TOURNAMENT_WITH_CUDA_KERNELS
  if (fusable({&p, &g, &m, &v})) {
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
    // The bias corrections as the fused kernel gets them: double, then float.
    check(cuda::adamw(p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), p.numel(), lr, beta1, beta2, weight_decay,
                      eps, static_cast<float>(bc1), static_cast<float>(bc2_sqrt), fresh, stream_of(p)),
          what);
    return;
  }
#endif
  if (fresh) {
    m.zero_();
    v.zero_();
  }
  OptimizerConfig cfg;
  cfg.lr = lr;
  cfg.beta1 = beta1;
  cfg.beta2 = beta2;
  cfg.weight_decay = weight_decay;
  cfg.eps = eps;
  adamw_unfused_step_(p, g, m, v, step, cfg);
}

}  // namespace

void adamw_step_(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, int64_t step, double lr, double beta1, double beta2,
                 double weight_decay, double eps) {
  adamw(p, g, m, v, step, lr, beta1, beta2, weight_decay, eps, /*fresh=*/false, "adamw_step_");
}

void adamw_first_step_(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, double lr, double beta1, double beta2,
                       double weight_decay, double eps) {
  adamw(p, g, m, v, 1, lr, beta1, beta2, weight_decay, eps, /*fresh=*/true, "adamw_first_step_");
}

}  // namespace tournament::kernels
