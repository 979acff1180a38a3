// "No foresight" between WARM and GO (the twelfth attack pass's
// a12_pre_go_reader): a thread the warmup call leaves running watches the
// parameter and batch regions until the timed call starts, and notes when
// they first change. The judge writes the timed start and batches there
// before it sends GO, so the thread sees them a little before the timed call;
// what matters is that the trusted clock already runs then. The plugin trains
// as the baseline and reports, as its last loss, the seconds from that first
// sighting to its return (0 when the thread never saw them change). Its
// reference hashes are taken before warmup returns, and the thread looks once
// more when the timed call stops it: on a busy machine (the suite runs two
// evaluations side by side on two cores) it may get no slice between the
// judge's writes and GO, and the writes are then first seen at the timed
// call's start. The adversarial suite checks that this never exceeds the
// run's time on the trusted clock: whatever a plugin learns early, it learns on the
// clock. (Its own time is measured inside the sandbox on the same monotonic
// clock; the trusted clock also covers the GO and DONE messages, so it is the
// longer of the two whenever the writes follow the clock's start.)
// CPU only (the regions are memfds it can map itself).
// expect: pass
#include <tournament/train_api.h>

#include <sys/mman.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

using namespace tournament;
using Clock = std::chrono::steady_clock;

namespace {

struct Mapping {
  const unsigned char* p = nullptr;
  size_t n = 0;
};

Mapping map_fd(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) return {};
  void* p = mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return {};
  return {static_cast<const unsigned char*>(p), static_cast<size_t>(st.st_size)};
}

uint64_t fnv(const unsigned char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::atomic<bool> stop{false};
std::atomic<bool> sighted{false};
Clock::time_point first_change;
std::thread watcher;
int calls = 0;

struct Watched {
  Mapping params, batches;
  size_t head = 0;  // the first tensor's bytes: written first
  uint64_t p0 = 0, b0 = 0;
  bool changed() const { return fnv(params.p, head) != p0 || fnv(batches.p, batches.n) != b0; }
};

void watch(Watched w) {
  for (;;) {
    const bool last = stop.load();
    if (w.changed()) {
      first_change = Clock::now();
      sighted = true;
      return;
    }
    if (last) return;
  }
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  const bool timed = ++calls == 2;
  if (timed && watcher.joinable()) {
    stop = true;
    watcher.join();
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
  if (!timed) {
    // After warmup's own writes to the parameters: from here on, any change is the judge's.
    Watched w;
    w.params = map_fd(4);
    w.batches = map_fd(5);
    TORCH_CHECK(w.params.p && w.batches.p, "pre_go_watch: the regions are not mappable (fds 4 and 5)");
    w.head = std::min<size_t>(w.params.n, 64 << 10);
    w.p0 = fnv(w.params.p, w.head);  // before WARM: nothing of the judge's next writes yet
    w.b0 = fnv(w.batches.p, w.batches.n);
    watcher = std::thread(watch, w);
    result.final_loss = loss.item<double>();
    return result;
  }
  loss.item<double>();  // the run's work done before the clock reading below
  result.final_loss = sighted ? std::chrono::duration<double>(Clock::now() - first_change).count() : 0.0;
  return result;
}
