// Attack (READ the benchmark without reading its folder): the benchmark data
// is generated from public inputs (hparams benchmark_data_seed 42; the tiny
// preset's synthetic Zipf tokens, src/data/synthetic.ts; the real preset's
// FineWeb rows are chosen by the same seeded Rng, src/setup/dataset.ts), and
// the probe batch the verdict's `probe_loss` check rests on is ALWAYS the
// last probe_rows samples (evaluate.ts, planData): fixed for every run of
// every submission, and so known to every miner. This plugin regenerates the
// whole tiny benchmark in its static initialiser (xoshiro128** + Zipf ported
// to C++), then in the timed call looks up every timed row among the samples
// it regenerated, and fails its own run on purpose with the evidence in the
// message (the only channel back): how many of the timed rows it knew, their
// sample indices, and the held-out probe rows' first tokens. A submission
// that knows the probe rows can train on them (or steer the weights towards
// them) to move the one check that sees a uniform shortfall of training.
// A correct harness: the probe must be secret (drawn per evaluation from rows
// the submission cannot know); this plugin then fails as it does now, but
// its message says "0/80".
// Fixed 2026-12-02: the probe rows are now drawn per evaluation from a CSPRNG
// (planData's probeSeed; test/plan-data.test.ts), so what this plugin prints
// as the probe is no longer it; it still fails on purpose.
// expect: crash
// RESULT (local-bench --runs 1 --seed 1000): REJECTED (crash, on purpose); the verdict
// quotes: "probe_known: 80/80 timed rows regenerated from the public seed; samples
// 144,41,210,...; probe rows 252-255 start [3 0 7] [233 613 20] [8 0 0] [0 561 731]",
// which are exactly the first tokens of samples 252-255 of benchmark/data/train.pt. A HOLE
// (design): the held-out probe and the whole data set are known to every submission.
#include <tournament/train_api.h>

#include <cstdint>
#include <map>
#include <sstream>
#include <vector>

using namespace tournament;

namespace {

struct Rng {
  uint32_t s[4];
  static uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }
  explicit Rng(double seed) {
    uint32_t x = static_cast<uint32_t>(static_cast<uint64_t>(seed));
    const uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(seed / 4294967296.0));
    for (int i = 0; i < 4; ++i) {
      x = x + 0x9e3779b9u + (i == 1 ? hi : 0u);
      uint32_t z = x;
      z = (z ^ (z >> 16)) * 0x85ebca6bu;
      z = (z ^ (z >> 13)) * 0xc2b2ae35u;
      s[i] = z ^ (z >> 16);
    }
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;
  }
  uint32_t next() {
    const uint32_t r = rotl(s[1] * 5u, 7) * 9u;
    const uint32_t t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 11);
    return r;
  }
  double next_float() { return (static_cast<double>(next() >> 5) * 67108864.0 + static_cast<double>(next() >> 6)) / 9007199254740992.0; }
};

constexpr int kSamples = 256, kSeqLen = 128, kVocab = 2048, kSeed = 42, kProbeRows = 4;

std::vector<int64_t> regenerate() {
  std::vector<double> cdf(kVocab);
  double sum = 0;
  for (int k = 0; k < kVocab; ++k) { sum += 1.0 / (k + 1); cdf[k] = sum; }
  Rng rng(kSeed);
  std::vector<int64_t> ids(static_cast<size_t>(kSamples) * kSeqLen);
  for (auto& id : ids) {
    const double u = rng.next_float() * cdf[kVocab - 1];
    int lo = 0, hi = kVocab - 1;
    while (lo < hi) { const int mid = (lo + hi) >> 1; if (cdf[mid] > u) hi = mid; else lo = mid + 1; }
    id = lo;
  }
  return ids;
}

const std::vector<int64_t> kBench = regenerate();

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  static int calls = 0;
  const bool timed = ++calls == 2;
  std::map<std::vector<int64_t>, int> index;
  for (int r = 0; r < kSamples; ++r) index[std::vector<int64_t>(kBench.begin() + r * kSeqLen, kBench.begin() + (r + 1) * kSeqLen)] = r;
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  int known = 0, total = 0;
  std::ostringstream rows;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto cpu = batch.to(torch::kCPU).contiguous();
    for (int64_t b = 0; b < cpu.size(0); ++b, ++total) {
      const int64_t* p = cpu[b].data_ptr<int64_t>();
      auto it = index.find(std::vector<int64_t>(p, p + cpu.size(1)));
      if (it != index.end()) { ++known; if (total < 24) rows << it->second << ','; }
    }
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) { result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1); result.final_loss = loss.item<double>(); }
  }
  if (timed) {
    std::ostringstream m;
    m << "probe_known: " << known << "/" << total << " timed rows regenerated from the public seed; samples " << rows.str()
      << "...; probe rows " << kSamples - kProbeRows << "-" << kSamples - 1 << " start";
    for (int r = kSamples - kProbeRows; r < kSamples; ++r) m << " [" << kBench[r * kSeqLen] << " " << kBench[r * kSeqLen + 1] << " " << kBench[r * kSeqLen + 2] << "]";
    throw std::runtime_error(m.str());
  }
  return result;
}
