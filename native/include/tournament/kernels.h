// Fused kernels a submission may call (the engine exports them like model.h's
// code). Each computes exactly what the unfused libtorch ops named beside it
// compute, bf16 rounding for bf16 rounding: on a CUDA build with bf16
// contiguous inputs one fused CUDA kernel (native/src/kernels/fused.cu), anywhere
// else those ops themselves. `kernels::fused_available()` says which.
// Shapes: T tokens (rows), H hidden, I intermediate, S sequence, D head dim,
// Nq / Nkv heads.
#pragma once

#include <tournament/libtorch.h>

#define TOURNAMENT_KERNELS_VERSION 4

namespace tournament::kernels {

// Whether the engine was built with its CUDA kernels.
bool fused_available();

// RMSNorm as the engine's model computes it: s = x (+ residual, rounded once
// when given, written to *sum_out), rstd = rsqrt(mean(s^2) + eps) in float32,
// y = w * bf16(s * rstd) in the input dtype. x, residual [T, H]; w [H];
// returns y [T, H]; *rstd [T] float32.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps, torch::Tensor* rstd,
                       const torch::Tensor& residual = {}, torch::Tensor* sum_out = nullptr);

// Its backward, as the engine's RMSNorm autograd function computes it, plus
// the residual's gradient when given (dx = residual_grad + dx, one rounding, as
// autograd sums the two paths). g, x [T, H], rstd [T] -> dx [T, H]; *dw [H].
torch::Tensor rms_norm_backward(const torch::Tensor& g, const torch::Tensor& x, const torch::Tensor& w,
                                const torch::Tensor& rstd, torch::Tensor* dw, const torch::Tensor& residual_grad = {});

// silu(gate) * up. [T, I] each -> [T, I].
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);

// The SwiGLU backward, in place: dp (the gradient of silu(gate) * up) becomes
// silu(gate) * up (recomputed, for the down projection's weight gradient),
// gate its gradient silu_backward(dp * up, gate), up its gradient dp * silu(gate).
void swiglu_backward_(torch::Tensor& dp, torch::Tensor& gate, torch::Tensor& up);

// Rotary embedding in place on the q and k columns of a fused q/k/v product
// qkv [B * S, (Nq + 2 Nkv) D] (rows: token b * S + s): x cos + rotate_half(x) sin
// with cos / sin [S, D]. v's columns are left as they are.
void rope_qkv_(torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin, int64_t S, int64_t Nq,
               int64_t Nkv, int64_t D);

// Its backward: the gradients of the rotated q [B, S, Nq, D] and k [B, S,
// Nkv, D] and of v [B, S, Nkv, D] (any strides, D contiguous) into one
// [B * S, (Nq + 2 Nkv) D] tensor, the gradient of the fused product.
torch::Tensor rope_qkv_backward(const torch::Tensor& dq, const torch::Tensor& dk, const torch::Tensor& dv,
                                const torch::Tensor& cos, const torch::Tensor& sin);

// Cross entropy's gradient and per-row log-probability in one pass per row,
// in place, as model.cpp's linear_cross_entropy computes them from a chunk of
// logits: logp = log_softmax(logits in float32); the logits become
// bf16(exp(logp) * scale, less scale at the target) (d loss / d logits with
// scale = 1 / rows of the whole loss); row_logp = logp at the targets.
// logits [n, V] (the weight's dtype, contiguous), targets [n] int64 -> row_logp [n] float32.
void cross_entropy_grad_(torch::Tensor& logits, const torch::Tensor& targets, double scale, torch::Tensor& row_logp);

// A float32 sum of bf16 terms (chunks' products), as zeros(float32) then
// acc.add_(x) for each term then .to(bf16) compute it, one pass per term:
// accumulate_(acc, x, /*first=*/true) sets acc = x (acc allocated, uninitialised),
// accumulate_(acc, x, false) adds x, accumulate_finish(acc, x) returns
// bf16(acc + x) for the last term. acc float32, x bf16, same shape, contiguous.
void accumulate_(torch::Tensor& acc, const torch::Tensor& x, bool first);
torch::Tensor accumulate_finish(const torch::Tensor& acc, const torch::Tensor& x);

// The float32 sum of bf16 terms stacked along the first dimension, rounded
// once (version 3): x.sum(0, float32).to(bf16), in one read of each term.
// x [terms, ...] -> [...] in x's dtype.
torch::Tensor sum_terms(const torch::Tensor& x);

// One AdamW step on one parameter (version 2), in place: the steps of
// PyTorch's fused AdamW (_fused_adamw_, what tournament::AdamW runs on CUDA)
// as one kernel per tensor on a CUDA build with bf16 contiguous tensors, one
// load and one store of each bf16 tensor with float math between (that
// kernel does most of it in double, from its double hyper-parameters: the
// results agree to about a float ulp before the bf16 rounding of the store);
// elsewhere tournament::adamw_unfused_step_ (optim.h). p, g, m (exp_avg),
// v (exp_avg_sq) of one shape; step counts from 1.
void adamw_step_(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v, int64_t step,
                 double lr, double beta1, double beta2, double weight_decay, double eps);

// Step 1 of the same with moments that start at zero (version 4): m and v are
// written, never read, so they may be uninitialised (torch::empty), and the
// result is adamw_step_'s with zeroed moments, bit for bit. Saves zeroing
// them and reading the zeros.
void adamw_first_step_(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v, double lr,
                       double beta1, double beta2, double weight_decay, double eps);

}  // namespace tournament::kernels
