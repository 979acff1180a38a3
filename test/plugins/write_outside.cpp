// Sandbox probe: tries to create files outside the sandbox's scratch
// directory: /tmp/tournament-escape-write_outside, /root/tournament-escape-
// write_outside, and tournament-escape-write_outside in the project directory
// (found from the runner's path, <project>/build/Release/<runner>). The
// sandbox's root is read-only and its /tmp private, so nothing may reach the
// host: the test checks that none of these files exists there. Then it
// trains honestly.
// expect: pass (and the test asserts none of the files exists on the host)
#include <tournament/train_api.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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

static bool try_create(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  std::fputs("escaped\n", f);
  std::fclose(f);
  return true;
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  // Whatever lands inside the sandbox's private /tmp (the project too, when it lies under /tmp, as in a CI
  // clone) vanishes with it; the test checks the host for these files.
  try_create("/tmp/tournament-escape-write_outside");
  try_create(project_dir() + "/tournament-escape-write_outside");
  try_create("/root/tournament-escape-write_outside");

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
