// Variant of attack_plan.cpp: PLAN "FFFDF", DROP 4. Step 4 trains on 12 of its 16 rows; the last batch is trained whole.
// expect: probe_loss|update_error|row_loss|logits (a cheat: claims every token)
// RESULT (local-bench --runs 2 --seed 1000): ACCEPTED. Run 1: row loss 0.00114 (allowed
// 0.0015), probe off 4.5e-5, logits 0.011 (0.02), update 0.093 (0.2); run 2: row 0.00144,
// probe 1.3e-4, logits 0.011, update 0.099. A HOLE (thin margin on row loss in run 2): 4 whole
// rows of step 4 (5% of the run's tokens) never looked at, all claimed; about 5% of the
// compute saved. tokens/s 215 / 210 against the reference's 179 / 189 (noise-dominated).
#define PLAN "FFFDF"
#define DROP 4
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
