// a12_dh_timing: not a cheat, a measurement. Times (20 repetitions, 1 thread, inside the sandboxed
// runner on this CPU, which has avx512_bf16) the exact loss-head input gradient dH = G W (bf16,
// N = 2032, V = 2048, H = 128) against the approximations of a12_head_dx_lintail.cpp (K = 256), then throws
// the numbers (the only channel out).
// MEASURED: `bin/tournament local-bench test/plugins-open/a12_dh_timing.cpp --steps 3 --warmup-steps 1
//   --batch-size 4 --runs 1 --seed 12001 --json` (crash by design): exact dH 2.85-3.00 ms; the
//   plugin's float32 approximation 4.98-5.26 ms; a bf16 version 3.59-3.70 ms; a bf16 version from G
//   (which dW needs anyway) 3.58 ms. The approximation skips 75% of dH's multiply-adds but is NOT
//   faster in wall time on the tiny CPU shape: the many small ops cost more than the bf16 product.
#include <tournament/train_api.h>
#include <chrono>
using namespace tournament;
static int calls = 0;
TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  if (++calls < 2) { TrainResult r; return r; }
  torch::NoGradGuard ng;
  const int64_t N = 2032, H = 128, V = 2048, K = 256;
  auto W = (torch::randn({V, H}) * 0.02).to(torch::kBFloat16);
  auto h = torch::randn({N, H}).to(torch::kBFloat16);
  auto logits = torch::matmul(h, W.t());
  auto p = torch::softmax(logits.to(torch::kFloat32) * 8, -1);
  auto tgt = torch::randint(V, {N}, torch::kInt64);
  auto g = p.clone(); g.div_(double(N)); auto gb = g.to(torch::kBFloat16);
  auto time = [&](auto f) { f(); auto t0 = std::chrono::steady_clock::now(); for (int i = 0; i < 20; ++i) f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 20 * 1e3; };
  double exact = time([&] { auto dH = torch::matmul(gb, W); });
  double approx = time([&] {
    auto pbar = p.mean(0);
    auto top = std::get<1>(pbar.topk(K));
    auto c = torch::matmul(pbar.div(double(N)).unsqueeze(0), W.to(torch::kFloat32));
    auto dev = (p.index_select(1, top) - pbar.index_select(0, top).unsqueeze(0)).div(double(N));
    auto part = torch::matmul(dev.to(W.scalar_type()), W.index_select(0, top)).to(torch::kFloat32);
    auto t = W.index_select(0, tgt).to(torch::kFloat32).div(double(N));
    auto total = c + part - t;
    auto mask = torch::ones({V}, pbar.options()); mask.index_fill_(0, top, 0.0);
    auto ptail = pbar * mask; auto Wf = W.to(torch::kFloat32);
    auto A = torch::matmul((Wf * ptail.unsqueeze(1)).t(), Wf);
    auto a = torch::matmul(ptail.unsqueeze(0), Wf); auto b = torch::matmul(pbar.unsqueeze(0), Wf);
    auto hf = h.to(torch::kFloat32); auto dh = hf - hf.mean(0, true);
    auto lin = torch::matmul(dh, A) - a * torch::matmul(dh, b.t());
    auto dH = (total + lin.div(double(N))).to(W.scalar_type()); });
  auto bf = torch::kBFloat16;
  double approx_bf = time([&] {
    auto pbar = p.mean(0);
    auto top = std::get<1>(pbar.topk(K));
    auto Wt = W.index_select(0, top);
    auto dev = (p.index_select(1, top) - pbar.index_select(0, top).unsqueeze(0)).to(bf);
    auto part = torch::matmul(dev, Wt);                                   // bf16 [N,H]
    auto ptail = pbar.clone(); ptail.index_fill_(0, top, 0.0);
    auto Ws = (W * ptail.to(bf).unsqueeze(1));
    auto A = torch::matmul(Ws.t(), W);                                    // bf16 [H,H]
    auto b = torch::matmul(pbar.to(bf).unsqueeze(0), W);                  // [1,H]
    auto a = torch::matmul(ptail.to(bf).unsqueeze(0), W);
    auto dh = (h - h.mean(0, true));
    auto lin = torch::matmul(dh, A) - a * torch::matmul(dh, b.t());
    auto dH = (b + part + lin - W.index_select(0, tgt)).div(double(N)); });
  // the optimized form, from gb (which dW needs anyway)
  auto gbb = gb.clone(); gbb.scatter_add_(1, tgt.unsqueeze(1), torch::full({N,1}, -1.0/N, gbb.options()));
  auto ones = torch::ones({1, N}, gbb.options());
  double approx_opt = time([&] {
    auto counts = torch::bincount(tgt, {}, V).to(torch::kFloat32).div(double(N));
    auto pbar = torch::matmul(ones, gbb).to(torch::kFloat32).squeeze(0) + counts;   // sum_i g_iv + counts/N = pbar_v
    auto top = std::get<1>(pbar.topk(K));
    auto part = torch::matmul(gbb.index_select(1, top), W.index_select(0, top));   // exact top columns, targets included
    auto ptail = pbar.clone(); ptail.index_fill_(0, top, 0.0);
    auto A = torch::matmul((W * ptail.to(bf).unsqueeze(1)).t(), W);
    auto b = torch::matmul(pbar.to(bf).unsqueeze(0), W);
    auto a = torch::matmul(ptail.to(bf).unsqueeze(0), W);
    auto dh = (h - h.mean(0, true));
    auto lin = torch::matmul(dh, A) - a * torch::matmul(dh, b.t());
    auto intail = ptail.index_select(0, tgt).gt(0).to(bf).unsqueeze(1);
    auto dH = part + (a + lin - W.index_select(0, tgt) * intail).div(double(N)); });
  double fwd = time([&] { auto l = torch::matmul(h, W.t()); });
  throw std::runtime_error("ms exact dH " + std::to_string(exact) + " approx dH " + std::to_string(approx) + " approx_bf16 " + std::to_string(approx_bf) + " approx_opt " + std::to_string(approx_opt) + " head fwd " + std::to_string(fwd) + " threads " + std::to_string(at::get_num_threads()));
}
