// a12_pre_go_reader: reads the timed run's data (and its initial weights) BEFORE GO.
// MEASURED: `bin/tournament local-bench test/plugins-open/a12_pre_go_reader.cpp --steps 3 --warmup-steps 1
//   --batch-size 4 --runs 1 --seed 12001 --json`: REJECTED (crash, by design: the report is the error text):
//   "PREGO batches_eq=1 n=1 dt=1610us params_eq=1 n=2 dt=1540us tok=12,1 it=855 pdiff=0": the thread,
//   running between WARM and GO, held a full copy of every timed batch and of the whole timed initial
//   parameter region ~1.5 ms BEFORE GO (equal byte for byte to what the iterator and the parameters held
//   at GO). Per the README the trusted clock already runs then, so it buys at most that ~1.5 ms head start.
// Skips no work (0% of the tiny run and of a 7B run); it is an information-flow probe
// for the README's "No foresight" invariant. A thread started in the warmup call
// (inner_steps' first call) keeps running between WARM and GO. It watches the batch
// region (the smallest shared memfd mapping) and the parameter region (the mapping
// holding the model's parameters) and records when each last changed. At the start of
// the timed call it compares what it had already copied before GO with what the
// iterator serves, and reports how long before GO the timed batches and the timed
// initial weights were readable, by throwing (the only channel out: the verdict shows
// the sanitised error text). A variant that does not throw is the same minus the throw.
#include <tournament/train_api.h>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

using namespace tournament;
using clk = std::chrono::steady_clock;
namespace {
struct Region { const unsigned char* p = nullptr; size_t n = 0; };
std::vector<Region> shared_maps() {
  std::vector<Region> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream ls(line);
    std::string range, perms;
    ls >> range >> perms;
    if (perms.size() < 4 || perms[3] != 's' || perms[0] != 'r') continue;
    if (line.find("memfd:tournament") == std::string::npos) continue;
    auto dash = range.find('-');
    uintptr_t a = std::stoull(range.substr(0, dash), nullptr, 16), b = std::stoull(range.substr(dash + 1), nullptr, 16);
    out.push_back({(const unsigned char*)a, size_t(b - a)});
  }
  return out;
}
uint64_t hash(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const uint64_t* q = (const uint64_t*)p;
  for (size_t i = 0; i < n / 8; ++i) h = (h ^ q[i]) * 1099511628211ull;
  return h;
}
std::atomic<bool> g_stop{false};
std::atomic<bool> g_go{false};
std::thread g_thread;
Region g_batch, g_param;
std::vector<unsigned char> g_batch_copy;       // last snapshot taken BEFORE GO
std::vector<unsigned char> g_param_copy;       // last snapshot taken BEFORE GO
clk::time_point g_batch_changed, g_param_changed, g_go_time;
int g_calls = 0;
int g_batch_changes = 0, g_param_changes = 0;
long long g_iters = 0;
}

static void watcher() {
  const size_t ps = std::min<size_t>(g_param.n, 4096);  // a page of the parameters: cheap to watch
  uint64_t hb = hash(g_batch.p, g_batch.n), hp = hash(g_param.p, ps);
  while (!g_stop.load()) {
    uint64_t nb = hash(g_batch.p, g_batch.n), np = hash(g_param.p, ps);
    ++g_iters;
    if (g_go.load()) break;  // copies below are only ever of pre-GO contents
    if (nb != hb) { hb = nb; g_batch_changed = clk::now(); ++g_batch_changes; g_batch_copy.assign(g_batch.p, g_batch.p + g_batch.n); }
    if (np != hp) { hp = np; g_param_changed = clk::now(); ++g_param_changes; g_param_copy.assign(g_param.p, g_param.p + g_param.n); }
  }
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  ++g_calls;
  if (g_calls >= 2) { g_go_time = clk::now(); g_go = true; if (g_thread.joinable()) g_thread.join(); }
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]));
  const int64_t B = data.batch_size(), S = data.seq_len();
  std::ostringstream rep;
  if (g_calls == 1) {
    auto maps = shared_maps();
    const void* pp = model->parameters()[0].data_ptr();
    for (auto& r : maps) {
      if ((const void*)r.p <= pp && pp < (const void*)(r.p + r.n)) g_param = r;
      if (!g_batch.p || r.n < g_batch.n) g_batch = r;
    }
    TORCH_CHECK(g_batch.p && g_param.p, "regions not found");
  } else {
    // what the thread held before GO against what the iterator serves now
    bool same = g_batch_copy.size() >= size_t(num_steps * B * S * 8);
    for (int64_t s = 0; same && s < num_steps; ++s)
      same = std::memcmp(g_batch_copy.data() + s * B * S * 8, batches[s].contiguous().data_ptr(), B * S * 8) == 0;
    bool psame = g_param_copy.size() == g_param.n && std::memcmp(g_param_copy.data(), g_param.p, g_param.n) == 0;
    auto us = [](clk::time_point a, clk::time_point b) { return (long long)std::chrono::duration_cast<std::chrono::microseconds>(b - a).count(); };
    rep << "PREGO batches_eq=" << same << " n=" << g_batch_changes << " dt="
        << us(g_batch_changed, g_go_time) << "us params_eq=" << psame
        << " n=" << g_param_changes << " dt=" << us(g_param_changed, g_go_time) << "us tok="
        << batches[0][0][0].item<int64_t>() << "," << batches[0][0][1].item<int64_t>()
        << " it=" << g_iters << " pdiff=" << [&]{ size_t d=0; for (size_t i=0;i<g_param.n && i<g_param_copy.size();++i) d+= g_param_copy[i]!=g_param.p[i]; return d; }()
;
  }
  AdamW opt(model->parameters(), optimizer);
  TrainResult result; torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    auto hidden = model->hidden_states(batches[step]);
    torch::Tensor logits;
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batches[step], logits);
    loss.backward(); opt.step(); opt.zero_grad();
    result.total_tokens += batches[step].numel();
    if (step == num_steps - 1) result.logits = logits;
  }
  result.final_loss = loss.item<double>();
  if (g_calls == 1) g_thread = std::thread(watcher);  // after warmup's own writes to the parameters
  else throw std::runtime_error(rep.str());
  return result;
}
