// Attack pass (2026-12-02): the last step trains only on the first half of
// every row's positions (a no-grad forward makes the returned logits);
// every token is claimed: 10% of the run's tokens untrained. Was ACCEPTED
// twice, also on fresh seeds (row loss 0.0005-0.001 against 0.0015: a
// shortfall spread evenly over every row is invisible to a median-centred
// per-row check). Now the cell check (parts of rows) and the batch check
// (a batch's mean) see it.
// expect: cell_loss|batch_loss|probe_loss|update_error|logits
#define PLAN "H"
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
  // PLAN names the last strlen(PLAN) steps; the ones before are honest.
  const int64_t first = num_steps - static_cast<int64_t>(std::strlen(plan));
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
    const char mode = step >= first && step - first < static_cast<int64_t>(std::strlen(plan)) ? plan[step - first] : 'F';
    torch::Tensor logits_out;
    double loss_out = 0;
    if (mode == 'F' || (mode == 'R' && !saved[0].defined())) {
      auto logits = model->forward(batch);
      auto loss = causal_lm_loss(logits, batch);
      loss.backward();
      for (size_t i = 0; i < params.size(); ++i) saved[i] = params[i].grad().detach().clone();
      opt.step();
      data.step_done();  // the weights after this step, for the trajectory check
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
      data.step_done();  // the weights after this step, for the trajectory check
      opt.zero_grad();
    } else if (mode == 'H') {
      if (last) {
        torch::NoGradGuard ng;
        logits_out = model->forward(batch);
        loss_out = causal_lm_loss(logits_out, batch).item<double>();
      }
      auto part = batch.narrow(1, 0, S * TRUNC / 128).contiguous();  // TRUNC / 128 of every row
      auto logits = model->forward(part);
      auto loss = causal_lm_loss(logits, part);
      loss.backward();
      for (size_t i = 0; i < params.size(); ++i) saved[i] = params[i].grad().detach().clone();
      opt.step();
      data.step_done();  // the weights after this step, for the trajectory check
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
      data.step_done();  // the weights after this step, for the trajectory check
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
