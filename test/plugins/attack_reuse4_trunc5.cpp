// Variant of attack_plan.cpp: PLAN "FFFRH", TRUNC 64. Step 4 does no forward and no backward (AdamW re-applies step 3's gradient: batch 4 is never looked at); the last step trains on the first 64 of 128 positions of every row.
// expect: probe_loss|update_error|row_loss|logits (a cheat: claims every token)
// RESULT (local-bench --runs 2 --seed 1000): REJECTED: row_loss 0.00261 / 0.00303 and
// update_error 0.196 / 0.208 (allowed 0.2); probe off 9.7e-4 / 4.7e-4 and logits 0.018 / 0.017
// passed. Not a hole.
#define PLAN "FFFRH"
#define TRUNC 64
#include <tournament/train_api.h>

#include <cstring>

using namespace tournament;

#ifndef PLAN
#define PLAN "FFFFF"
#endif
#ifndef TRUNC
#define TRUNC 64
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
