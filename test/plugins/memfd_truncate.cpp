// Attack (tamper with the verification / crash the validator): the parameter,
// batch and logits regions on the CPU are memfds created without
// MFD_ALLOW_SEALING or F_SEAL_SHRINK, handed to the runner read-write (fds 4,
// 5, 6). The runner may ftruncate them. This plugin trains exactly as the
// baseline, and at the end of the timed call truncates the parameter memfd
// to 0 bytes. The trusted side's own mapping of that memfd then has no pages
// behind it: its first read after the kill (the post-kill fingerprint, the
// probe loss) takes SIGBUS and the whole validator process (Node, holding the
// evaluation loop) dies: no verdict, and a validator that evaluates this
// submission again dies again (a poison pill that stops every evaluation).
// Truncating the batch memfd (fd 5) at dlopen does the same one phase
// earlier (the trusted side writes warmup's batches into it). Fixed when the
// regions are sealed against shrinking (memfd_create with MFD_ALLOW_SEALING,
// then F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) or the trusted side
// survives it: then ftruncate fails here and the run is the baseline's.
// Measured (CPU tiny, local-bench --runs 1): the validator process died with
// "Bus error", exit status 135 (SIGBUS), no verdict, scratch left behind.
// expect: pass
#include <tournament/train_api.h>

#include <unistd.h>

using namespace tournament;

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
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1).clone();
      result.final_loss = loss.item<double>();
    }
  }
  // Only in the timed call (warmup has 2 steps, the timed run 5 by default):
  // the parameters are not touched by the runner after this returns.
  static int calls = 0;
  if (++calls == 2 && !device.is_cuda()) ::ftruncate(4, 0);  // 4: the parameter memfd (protocol.h)
  return result;
}
