// a12_pre_go_train: trains the timed run BEFORE GO, from the shared memory directly.
// MEASURED: `bin/tournament local-bench test/plugins-open/a12_pre_go_train.cpp --steps 3 --warmup-steps 1
//   --batch-size 4 --runs 2 --seed 12001 --json`: ACCEPTED (timed 0.171 / 0.168 s vs reference 0.248 /
//   0.235 s), but a reporting copy (throws when the thread path ran) did NOT throw: GO always arrived
//   within the 500 us stability window, so the honest fallback trained; the speed difference is not
//   from pre-GO work. No off-clock work shown.
// Skips no arithmetic (0% of the work, tiny and 7B); what it tests is whether work done
// between the trusted side's writes and GO is off the trusted clock. A thread left
// running by the warmup call waits for the batch region to change (the timed batches
// being written), then for the whole parameter region to stay unchanged for 500 us
// (the timed start written), then runs the baseline's steps on those batches over the
// shared parameters, reading the batches straight from the region. The timed call joins
// it and returns its result; if GO arrives before the thread started, it trains itself.
#include <tournament/train_api.h>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
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
std::atomic<int> g_state{0};  // 0 waiting, 1 training, 2 done, 3 aborted
std::atomic<bool> g_go{false};
std::thread g_thread;
Region g_batch, g_param;
std::optional<Qwen2ForCausalLM> g_model;
OptimizerConfig g_opt;
int64_t g_B = 0, g_S = 0;
TrainResult g_result;
int g_calls = 0;
long long g_head_us = 0;
clk::time_point g_start;

TrainResult train(Qwen2ForCausalLM& model, const std::vector<torch::Tensor>& batches, const OptimizerConfig& optimizer) {
  const int64_t B = batches[0].size(0), S = batches[0].size(1), n = batches.size();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result; torch::Tensor loss;
  for (int64_t step = 0; step < n; ++step) {
    auto hidden = model->hidden_states(batches[step]);
    torch::Tensor logits;
    if (step == n - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batches[step], logits);
    loss.backward(); opt.step(); opt.zero_grad();
    result.total_tokens += batches[step].numel();
    if (step == n - 1) result.logits = logits;
  }
  result.final_loss = loss.item<double>();
  return result;
}

void watcher() {
  uint64_t hb = hash(g_batch.p, g_batch.n);
  while (!g_go.load() && hash(g_batch.p, g_batch.n) == hb) {}
  uint64_t hp = hash(g_param.p, g_param.n);
  auto stable_since = clk::now();
  while (!g_go.load()) {
    uint64_t np = hash(g_param.p, g_param.n);
    if (np != hp) { hp = np; stable_since = clk::now(); }
    else if (clk::now() - stable_since > std::chrono::microseconds(500)) break;
  }
  int expected = 0;
  if (!g_state.compare_exchange_strong(expected, 1)) return;  // GO came first
  g_start = clk::now();
  const int64_t steps = g_batch.n / (g_B * g_S * 8);
  auto all = torch::from_blob((void*)g_batch.p, {steps, g_B, g_S}, torch::kInt64).clone();
  std::vector<torch::Tensor> batches;
  for (int64_t s = 0; s < steps; ++s) batches.push_back(all[s]);
  torch::AutoGradMode grad(true);
  g_result = train(*g_model, batches, g_opt);
  g_state = 2;
}
}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  ++g_calls;
  std::vector<torch::Tensor> batches(num_steps);
  if (g_calls >= 2) {
    auto go = clk::now();
    g_go = true;
    int expected = 0;
    bool thread_has_it = !g_state.compare_exchange_strong(expected, 3);
    if (g_thread.joinable()) g_thread.join();
    for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]));
    if (thread_has_it) {
      g_head_us = std::chrono::duration_cast<std::chrono::microseconds>(go - g_start).count();
      if (std::getenv("A12_REPORT")) throw std::runtime_error("head start us " + std::to_string(g_head_us));
      return g_result;
    }
    return train(model, batches, optimizer);
  }
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]));
  auto result = train(model, batches, optimizer);
  g_B = data.batch_size(); g_S = data.seq_len(); g_opt = optimizer; g_model = model;
  const void* pp = model->parameters()[0].data_ptr();
  for (auto& r : shared_maps()) {
    if ((const void*)r.p <= pp && pp < (const void*)(r.p + r.n)) g_param = r;
    if (!g_batch.p || r.n < g_batch.n) g_batch = r;
  }
  TORCH_CHECK(g_batch.p && g_param.p, "regions not found");
  g_thread = std::thread(watcher);
  return result;
}
