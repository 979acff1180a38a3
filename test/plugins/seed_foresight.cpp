// "No foresight" under --seed (the thirteenth attack pass): warmup's initial
// weights, handed to the plugin before the clock runs, must say nothing of the
// timed seed. When warmup's seed was a public hash of the timed one
// (sha256("tournament warmup seed <seed>")), a search over small seeds found
// the timed seed in warmup and a plugin trained the whole timed run there:
// ACCEPTED at about 25x the reference (docs/measurements/2026-12-04-attack13.md).
// In warmup this plugin tries every seed s below kSearch as the timed seed,
// with warmup's seed equal to s or to that hash of s, against warmup's first
// 16 weights of parameter 0 (drawn as init_weights draws them, model.cpp); at
// the timed call it fails its own run if its prediction of the timed start is
// what the judge wrote. Otherwise it trains as the baseline.
// test/local-bench.test.ts runs it with --seed 1000; without --seed it can
// find nothing, and passes.
// expect: pass
#include <tournament/train_api.h>

#include <string>

using namespace tournament;

namespace {
constexpr uint64_t kSearch = 4096;  // the seeds tried: the tests use --seed 1000

// A minimal SHA-256, for the derivation warmup seeds once had.
struct Sha256 {
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  static void digest(const std::string& msg, uint8_t out[32]) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::string m = msg;
    const uint64_t bits = uint64_t(msg.size()) * 8;
    m.push_back(char(0x80));
    while (m.size() % 64 != 56) m.push_back(0);
    for (int i = 7; i >= 0; --i) m.push_back(char((bits >> (8 * i)) & 0xff));
    for (size_t off = 0; off < m.size(); off += 64) {
      uint32_t w[64];
      for (int i = 0; i < 16; ++i)
        w[i] = (uint32_t(uint8_t(m[off + 4 * i])) << 24) | (uint32_t(uint8_t(m[off + 4 * i + 1])) << 16) |
               (uint32_t(uint8_t(m[off + 4 * i + 2])) << 8) | uint32_t(uint8_t(m[off + 4 * i + 3]));
      for (int i = 16; i < 64; ++i) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
      }
      uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
      for (int i = 0; i < 64; ++i) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25), ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + k[i] + w[i];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22), mj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + mj;
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) out[4 * i + j] = uint8_t(h[i] >> (24 - 8 * j));
  }
};

uint64_t warmup_seed_of(uint64_t seed) {
  uint8_t d[32];
  Sha256::digest("tournament warmup seed " + std::to_string(seed), d);
  uint64_t v = 0;
  for (int i = 0; i < 6; ++i) v = (v << 8) | d[i];
  return v;
}

// The first 16 values parameter `index` would get from `seed` (model.cpp init_parameter), rounded to bf16.
torch::Tensor first16(uint64_t seed, size_t index, double std) {
  auto gen = at::globalContext().defaultGenerator(torch::kCPU).clone();
  gen.set_current_seed(seed * 1000003ULL + index);
  return at::normal(0.0, std, {16}, gen, torch::TensorOptions().dtype(torch::kFloat32)).to(torch::kBFloat16);
}

torch::Tensor predicted;  // the timed run's first 16 weights of parameter 0, found in warmup
int calls = 0;

torch::Tensor first_weights(Qwen2ForCausalLM& model) {
  return model->parameters()[0].detach().reshape({-1}).narrow(0, 0, 16).to(torch::kCPU).to(torch::kBFloat16);
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  const bool timed = ++calls == 2;
  const auto now = first_weights(model);
  if (!timed) {
    torch::NoGradGuard no_grad;
    for (uint64_t s = 0; s < kSearch && !predicted.defined(); ++s) {
      if (torch::equal(first16(s, 0, 0.02), now) || torch::equal(first16(warmup_seed_of(s), 0, 0.02), now)) {
        predicted = first16(s, 0, 0.02);
      }
    }
  } else if (predicted.defined() && torch::equal(predicted, now)) {
    throw std::runtime_error("foresight: the timed seed was found from warmup's initial weights");
  }
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss;
  for (int64_t step = 0; step < num_steps && data.next(&batch); ++step) {
    auto logits = model->forward(batch);
    loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step + 1 == num_steps) result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
  }
  result.final_loss = loss.item<double>();
  return result;
}
