// a12_region_probe: not a cheat by itself; an introspection plugin. In each call it
// MEASURED: `bin/tournament local-bench test/plugins-open/a12_region_probe.cpp --steps 3 --warmup-steps 1
//   --batch-size 4 --runs 1 --seed 12001 --json`: REJECTED (crash, by design); the error text is cut at ~400
//   characters. It showed three shared memfd mappings (logits 2,080,768 B all NaN, parameters 1,789,952 B,
//   batches 12,288 B = exactly the 3 timed batches, only warmup's 4,096 B non-zero at warmup): the batch
//   region holds no more than this run's batches. Nothing found that should not be readable.
// lists /proc/self/maps (shared mappings), /proc/self/fd, the environment, and reads
// every shared file mapping (memfd regions): size, how many bytes are non-zero and
// whether the batch region holds more than the batches the iterator serves.
// It throws at the end of the timed call so the (sanitised) text shows in the verdict.
#include <tournament/train_api.h>
#include <dirent.h>
#include <unistd.h>
#include <fstream>
#include <sstream>
#include <cstring>

using namespace tournament;
static std::string g_log;
static int g_call = 0;

static std::string scan() {
  std::ostringstream o;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // shared mappings only: perms field has 's'
    std::istringstream ls(line);
    std::string range, perms, off, dev, inode, path;
    ls >> range >> perms >> off >> dev >> inode;
    std::getline(ls, path);
    if (perms.size() < 4 || perms[3] != 's') continue;
    auto dash = range.find('-');
    uintptr_t a = std::stoull(range.substr(0, dash), nullptr, 16), b = std::stoull(range.substr(dash + 1), nullptr, 16);
    size_t nz = 0, n = b - a;
    const unsigned char* p = (const unsigned char*)a;
    size_t firstnz = (size_t)-1, lastnz = 0, nan16 = 0;
    if (perms[0] == 'r') {
      for (size_t i = 0; i < n; ++i) if (p[i]) { ++nz; if (firstnz == (size_t)-1) firstnz = i; lastnz = i; }
    }
    o << "[" << perms << " " << n << "B nz=" << nz << " first=" << (long long)firstnz << " last=" << lastnz << path << "]";
  }
  o << " FDS:";
  if (DIR* d = opendir("/proc/self/fd")) {
    while (auto* e = readdir(d)) {
      char buf[256] = {0};
      std::string fp = std::string("/proc/self/fd/") + e->d_name;
      ssize_t k = readlink(fp.c_str(), buf, sizeof buf - 1);
      if (k > 0) o << e->d_name << "=" << buf << ";";
    }
    closedir(d);
  }
  o << " ENV:";
  for (char** e = environ; *e; ++e) o << *e << ";";
  return o.str();
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  ++g_call;
  g_log += " CALL" + std::to_string(g_call) + " B=" + std::to_string(data.batch_size()) + " S=" + std::to_string(data.seq_len()) + " steps=" + std::to_string(num_steps) + " ";
  g_log += scan();
  std::vector<torch::Tensor> batches(num_steps);
  for (int64_t s = 0; s < num_steps; ++s) TORCH_CHECK(data.next(&batches[s]));
  torch::Tensor extra;
  g_log += std::string(" more=") + (data.next(&extra) ? "YES" : "no");
  // batch data pointer location vs the maps
  std::ostringstream o; o << " batch0ptr=" << batches[0].data_ptr() << " ";
  g_log += o.str();
  const int64_t B = data.batch_size(), S = data.seq_len();
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
  if (g_call >= 2) throw std::runtime_error(g_log);
  return result;
}
