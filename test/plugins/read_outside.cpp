// Sandbox probe: tries to read files the sandbox must hide: the secrets the
// test plants at /tmp/tournament-secret-read_outside and
// /root/.tournament-secret-read_outside (the host's /tmp and root's $HOME),
// and the project's benchmark/manifest.json and .env (the project found from
// the runner's path, <project>/build/Release/<runner>). If any of them opens,
// it calls std::abort() ('crash'); otherwise it trains honestly.
// expect: pass
#include <tournament/train_api.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

using namespace tournament;

static std::string project_dir() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return ".";
  std::string p(exe, static_cast<size_t>(n));
  for (int up = 0; up < 3; ++up) p = p.substr(0, p.rfind('/'));
  return p.empty() ? "/" : p;
}

static bool readable(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  return f.good() && std::getline(f, line) && !line.empty();
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  const std::string project = project_dir();
  for (const std::string& secret : {std::string("/tmp/tournament-secret-read_outside"),
                                    std::string("/root/.tournament-secret-read_outside"),
                                    project + "/benchmark/manifest.json", project + "/.env"}) {
    if (readable(secret)) std::abort();
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
