// Attack (exploit the tolerance): a generic "skip work" plugin driven by a
// per-step PLAN string (one letter per timed step; warmup runs honestly):
//   F  an honest step (forward, loss, backward, AdamW)
//   R  no forward and no backward: AdamW applied again with the last real
//      gradient (work reused across steps). On the last step a no-grad
//      forward still produces the returned logits.
//   H  the step trains only on the first TRUNC positions of every row
//      (a shorter sequence: attention, MLP, lm_head and backward all cheaper);
//      on the last step a no-grad full forward produces the logits.
//   D  the step trains on the first B - DROP rows only (the others are never
//      looked at); never used on the last step (the row-loss check's batch).
//   L  backward only through lm_head (the hidden states come from a no-grad
//      forward); every other tensor reuses its last real gradient.
// Every token is claimed. The variants committed beside this file
// (attack_reuse_*.cpp, attack_trunc_*.cpp, attack_lmhead_*.cpp) fix PLAN.
// A correct harness must reject every plan but "FFFFF" (probe_loss,
// row_loss, update_error or logits). As committed (PLAN "FFFFF") it is honest.
// expect: pass
#include <tournament/train_api.h>

#include <cstring>

using namespace tournament;

#ifndef PLAN
#define PLAN "FFFFF"
#endif
#ifndef TRUNC
#define TRUNC 64
#endif
#ifndef DROP
#define DROP 8
#endif

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  const char* plan = PLAN;
  const bool use_plan = static_cast<int64_t>(std::strlen(plan)) == num_steps;
  AdamW opt(model->parameters(), optimizer);
  auto params = model->parameters();
  std::vector<torch::Tensor> saved(params.size());
  TrainResult result;
  torch::Tensor batch;
  const int64_t S = data.seq_len();
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    result.total_tokens += batch.numel();
    const bool last = step == num_steps - 1;
    const char mode = use_plan ? plan[step] : 'F';
    torch::Tensor logits_out;
    double loss_out = 0;
    if (mode == 'F' || (mode == 'R' && !saved[0].defined())) {
      auto logits = model->forward(batch);
      auto loss = causal_lm_loss(logits, batch);
      loss.backward();
      for (size_t i = 0; i < params.size(); ++i) saved[i] = params[i].grad().detach().clone();
      opt.step();
      opt.zero_grad();
      if (last) { logits_out = logits.detach(); loss_out = loss.item<double>(); }
    } else if (mode == 'R') {
      if (last) {
        torch::NoGradGuard ng;
        logits_out = model->forward(batch);
        loss_out = causal_lm_loss(logits_out, batch).item<double>();
      }
      for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = saved[i].clone();
      opt.step();
      opt.zero_grad();
    } else if (mode == 'H') {
      if (last) {
        torch::NoGradGuard ng;
        logits_out = model->forward(batch);
        loss_out = causal_lm_loss(logits_out, batch).item<double>();
      }
      auto part = batch.narrow(1, 0, TRUNC).contiguous();
      auto logits = model->forward(part);
      auto loss = causal_lm_loss(logits, part);
      loss.backward();
      for (size_t i = 0; i < params.size(); ++i) saved[i] = params[i].grad().detach().clone();
      opt.step();
      opt.zero_grad();
    } else if (mode == 'D') {
      auto part = batch.narrow(0, 0, batch.size(0) - DROP).contiguous();
      auto logits = model->forward(part);
      auto loss = causal_lm_loss(logits, part);
      loss.backward();
      for (size_t i = 0; i < params.size(); ++i) saved[i] = params[i].grad().detach().clone();
      opt.step();
      opt.zero_grad();
    } else if (mode == 'L') {
      torch::Tensor hidden;
      {
        torch::NoGradGuard ng;
        hidden = model->hidden_states(batch);
      }
      auto w = model->lm_head_weight();
      auto logits = torch::nn::functional::linear(hidden.detach(), w);
      auto loss = causal_lm_loss(logits, batch);
      loss.backward();
      for (size_t i = 0; i < params.size(); ++i) {
        if (params[i].grad().defined()) saved[i] = params[i].grad().detach().clone();
        else if (saved[i].defined()) params[i].mutable_grad() = saved[i].clone();
      }
      opt.step();
      opt.zero_grad();
      if (last) { logits_out = logits.detach(); loss_out = loss.item<double>(); }
    }
    if (last) {
      result.logits = logits_out.narrow(1, 0, S - 1);
      result.final_loss = loss_out;
    }
  }
  return result;
}
