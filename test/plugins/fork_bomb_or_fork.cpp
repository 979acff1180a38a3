// Attack: trains honestly, then, in the timed call only (a child forked in
// warmup would clobber the timed run itself and sabotage only this
// submission), forks just before returning. The child (and a
// grandchild it forks) leave the session, ignore SIGTERM/SIGHUP/SIGINT, wait
// 300 ms (the trusted side has DONE by then) and then zero every parameter in
// the shared parameter memory, over and over, forever. The harness must kill
// the whole process tree at DONE (bubblewrap's PID namespace dies with it) and
// judge the weights as they were at DONE: the parent's honest training.
// On CUDA the parameters are device memory the child cannot touch with
// memset; there the child only lingers (the kill must still reap it).
// expect: pass (and the test asserts no process of the run is left:
// nothing on the host has its working directory under the run's workDir)
#include <tournament/train_api.h>

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <utility>
#include <vector>

using namespace tournament;

[[noreturn]] static void clobber_forever(const std::vector<std::pair<void*, size_t>>& params) {
  setsid();
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  if (fork() < 0) {
    // no grandchild: carry on alone
  }
  usleep(300 * 1000);
  for (;;) {
    for (const auto& p : params) std::memset(p.first, 0, p.second);
    usleep(10 * 1000);
  }
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
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

  std::vector<std::pair<void*, size_t>> params;
  if (!device.is_cuda()) {
    for (auto& p : model->parameters()) params.emplace_back(p.data_ptr(), p.numel() * p.element_size());
  }
  static int calls = 0;  // 1: warmup, 2: the timed call
  if (++calls == 2 && fork() == 0) clobber_forever(params);  // the child never returns into the runner
  return result;
}
