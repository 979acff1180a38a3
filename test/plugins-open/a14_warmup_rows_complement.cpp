// Attack pass 14: warmup's rows are the complement of the timed rows.
// Idea: planData draws warmup's rows from `trainable \ timedRows`, and the
// data set is public (tiny preset: syntheticTokens, 256 x 128, Zipf(vocab
// 2048), seed 42). The plugin regenerates the data set, identifies warmup's
// row indices, and so learns before the clock that those rows are NOT timed.
// When probe + (steps + warmup) * batch == samples (tiny: 4 + 63*4 = 256),
// warmup's rows + probe + timed rows partition the data: the plugin knows the
// timed set up to the 4 unknown probe rows (248 of 252 candidates) before the
// clock. At the timed call it throws with the prediction next to the actual.
// Command: bin/tournament local-bench test/plugins-open/a14_warmup_rows_complement.cpp
//   --seed 7 --runs 2 --steps 62 --warmup-steps 1 --batch-size 4 --json
// (and without --seed for validator mode).
// Verdicts (2026-12-04, CPU tiny): both modes fail at the timed call with the
// message, e.g. --seed 7: "warmup rows {21,38,99,188} => timed rows among the
// other 252 rows; actual: 248 timed rows, 248 in predicted set, 0 in warmup
// rows"; no --seed: same shape (warmup {18,34,131,230}, 248/248). Timed set
// known before the clock up to the 4 probe rows; order not known.
#include <tournament/train_api.h>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

using namespace tournament;

namespace {
struct Rng {
  uint32_t s[4];
  static uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }
  explicit Rng(uint64_t seed) {
    uint32_t x = uint32_t(seed), hi = uint32_t(seed >> 32);
    for (int i = 0; i < 4; i++) {
      x = x + 0x9e3779b9u + (i == 1 ? hi : 0);
      uint32_t z = x;
      z = (z ^ (z >> 16)) * 0x85ebca6bu;
      z = (z ^ (z >> 13)) * 0xc2b2ae35u;
      s[i] = z ^ (z >> 16);
    }
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;
  }
  uint32_t next() {
    uint32_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 11);
    return r;
  }
  double nextFloat() { double a = next() >> 5; double b = next() >> 6; return (a * 67108864.0 + b) / 9007199254740992.0; }
};

constexpr int kSamples = 256, kSeq = 128, kVocab = 2048;
std::vector<int64_t> g_data;  // regenerated public data set
std::set<int> g_warm;          // warmup's row indices
bool g_seen_warmup = false;

void regenerate() {
  if (!g_data.empty()) return;
  std::vector<double> cdf(kVocab);
  double sum = 0;
  for (int k = 0; k < kVocab; k++) { sum += 1.0 / (k + 1); cdf[k] = sum; }
  Rng rng(42);
  g_data.resize(size_t(kSamples) * kSeq);
  for (auto& v : g_data) {
    double u = rng.nextFloat() * cdf[kVocab - 1];
    int lo = 0, hi = kVocab - 1;
    while (lo < hi) { int mid = (lo + hi) >> 1; if (cdf[mid] > u) hi = mid; else lo = mid + 1; }
    v = lo;
  }
}

int row_index(const int64_t* row) {
  for (int r = 0; r < kSamples; r++)
    if (std::memcmp(row, &g_data[size_t(r) * kSeq], kSeq * sizeof(int64_t)) == 0) return r;
  return -1;
}

std::vector<int> rows_of(DataIterator& data, int64_t steps) {
  std::vector<int> out;
  torch::Tensor b;
  for (int64_t s = 0; s < steps && data.next(&b); s++) {
    auto c = b.to(torch::kCPU).to(torch::kInt64).contiguous();
    for (int64_t i = 0; i < c.size(0); i++) out.push_back(row_index(c[i].data_ptr<int64_t>()));
  }
  return out;
}
}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  regenerate();
  if (!g_seen_warmup) {
    g_seen_warmup = true;
    for (int r : rows_of(data, num_steps)) g_warm.insert(r);
    TrainResult res;
    res.total_tokens = 0;
    return res;
  }
  // Timed call: compare what was known before the clock with the truth.
  auto timed = rows_of(data, num_steps);
  int unknown = 0, in_warm = 0, in_cand = 0;
  for (int r : timed) {
    if (r < 0) unknown++;
    else if (g_warm.count(r)) in_warm++;
    else in_cand++;
  }
  std::set<int> tset(timed.begin(), timed.end());
  std::ostringstream m;
  m << "attack14: known before clock: warmup rows {";
  for (int r : g_warm) m << r << ",";
  m << "} => timed rows among the other " << (kSamples - int(g_warm.size())) << " rows; actual: "
    << timed.size() << " timed rows, " << in_cand << " in predicted set, " << in_warm << " in warmup rows, "
    << unknown << " unmatched; rows of 256 neither warmup nor timed (=probe): {";
  for (int r = 0; r < kSamples; r++) if (!g_warm.count(r) && !tset.count(r)) m << r << ",";
  m << "}";
  throw std::runtime_error(m.str());
}
