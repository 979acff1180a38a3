// Control for "no secrets in the sandbox": trains exactly as the baseline, and
// first searches everything it can reach for the canary the test suite plants
// (an environment variable of the validator process and files in the
// benchmark folder, the work folder and the project): the environment and
// command line of every process it can see, the readable memory of every other
// process (PID 1 is bwrap's monitor), and every file outside the system
// folders. Finding it fails its own run with a crash that says where.
// expect: pass
#include <tournament/train_api.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace tournament;

namespace {

// Built at run time, so that the needle is in no file (this plugin's source
// and binary lie in a folder the sandbox shows).
const std::string kNeedle = std::string("TOURNAMENT_") + "CANARY";

bool has_needle(const std::string& s) { return s.find(kNeedle) != std::string::npos; }

std::string read_file(const std::string& path, size_t cap) {
  std::ifstream f(path, std::ios::binary);
  std::string out(cap, '\0');
  f.read(&out[0], static_cast<std::streamsize>(cap));
  out.resize(static_cast<size_t>(std::max<std::streamsize>(0, f.gcount())));
  return out;
}

// The readable mappings of another process, read through /proc/PID/mem.
bool memory_has_needle(const std::string& pid) {
  std::ifstream maps("/proc/" + pid + "/maps");
  const int mem = open(("/proc/" + pid + "/mem").c_str(), O_RDONLY);
  if (mem < 0) return false;
  std::string line;
  bool found = false;
  while (!found && std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    char perms[5] = {0};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
    std::string buf(std::min<unsigned long>(hi - lo, 64ul << 20), '\0');
    const ssize_t n = pread(mem, &buf[0], buf.size(), static_cast<off_t>(lo));
    if (n > 0) found = has_needle(buf.substr(0, static_cast<size_t>(n)));
  }
  close(mem);
  return found;
}

void walk(const std::string& dir, int depth, int& budget, std::vector<std::string>& hits) {
  static const std::vector<std::string> skip = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin"};
  if (depth > 12 || budget <= 0 || std::find(skip.begin(), skip.end(), dir) != skip.end()) return;
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || --budget <= 0) continue;
    const std::string path = (dir == "/" ? "" : dir) + "/" + name;
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) walk(path, depth + 1, budget, hits);
    else if (S_ISREG(st.st_mode) && st.st_size < (4 << 20) && has_needle(read_file(path, 4 << 20))) hits.push_back(path);
  }
  closedir(d);
}

std::string find_canary() {
  std::vector<std::string> hits;
  const std::string self = std::to_string(getpid());
  if (DIR* proc = opendir("/proc")) {
    while (dirent* e = readdir(proc)) {
      const std::string pid = e->d_name;
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      for (const char* what : {"environ", "cmdline"}) {
        if (has_needle(read_file("/proc/" + pid + "/" + what, 1 << 20))) hits.push_back("/proc/" + pid + "/" + what);
      }
      if (pid != self && memory_has_needle(pid)) hits.push_back("/proc/" + pid + "/mem");
    }
    closedir(proc);
  }
  int budget = 200000;
  walk("/", 0, budget, hits);
  std::ostringstream out;
  for (const auto& h : hits) out << h << ' ';
  return out.str();
}

int calls = 0;

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  if (++calls == 1) {
    const auto where = find_canary();
    if (!where.empty()) throw std::runtime_error("found the canary in: " + where);
  }
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
