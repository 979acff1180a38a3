// Honest variant: AdamW written out by hand instead of tournament::AdamW, with
// the numerics optim.h states: state (exp_avg, exp_avg_sq) in the parameter's
// dtype, the update computed in float32 (decoupled weight decay, bias
// corrections) and rounded once into the parameter, in place.
// expect: pass
#include <tournament/train_api.h>

#include <cmath>

using namespace tournament;

struct ManualAdamW {
  std::vector<torch::Tensor> params, exp_avg, exp_avg_sq;
  OptimizerConfig cfg;
  int64_t t = 0;

  ManualAdamW(std::vector<torch::Tensor> ps, const OptimizerConfig& c) : params(std::move(ps)), cfg(c) {
    for (auto& p : params) {
      exp_avg.push_back(torch::zeros_like(p));
      exp_avg_sq.push_back(torch::zeros_like(p));
    }
  }

  void step() {
    torch::NoGradGuard no_grad;
    ++t;
    const double bc1 = 1.0 - std::pow(cfg.beta1, double(t));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(cfg.beta2, double(t)));
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      if (!p.grad().defined()) continue;
      auto g = p.grad().to(torch::kFloat32);
      auto w = p.to(torch::kFloat32) * (1.0 - cfg.lr * cfg.weight_decay);
      auto m = exp_avg[i].to(torch::kFloat32) * cfg.beta1 + g * (1.0 - cfg.beta1);
      auto v = exp_avg_sq[i].to(torch::kFloat32) * cfg.beta2 + g * g * (1.0 - cfg.beta2);
      w = w - (cfg.lr / bc1) * m / (v.sqrt() / bc2_sqrt + cfg.eps);
      p.copy_(w);
      exp_avg[i].copy_(m);
      exp_avg_sq[i].copy_(v);
      p.mutable_grad() = torch::Tensor();
    }
  }
};

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  model->set_checkpointed_layers(std::vector<bool>(model->config.num_hidden_layers, device.is_cuda()));
  ManualAdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);
    auto loss = causal_lm_loss(logits, batch);
    loss.backward();
    opt.step();  // also drops the gradients
    data.step_done();  // the weights after this step, for the trajectory check
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) {
      result.logits = logits.detach().narrow(1, 0, batch.size(1) - 1);
      result.final_loss = loss.item<double>();
    }
  }
  return result;
}
