// Cheat, for two ranks (test/multi-rank.test.ts): rank 1 never trains on its
// share. It runs the forward pass (so its logits are right) but puts zeros
// into the gradient all-reduce instead of its rows' gradients, so every rank
// applies only rank 0's rows' gradient (halved), and the ranks stay identical.
// Half of every batch untrained, every token claimed.
// expect: cell_loss|batch_loss|probe_loss|update_error
#include <tournament/train_api.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device,
                        const OptimizerConfig& optimizer) {
  const Distributed& dist = distributed();
  TORCH_CHECK(dist.world_size > 1, "skip_share is a multi-rank plugin");
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);  // [B/G, S, V]
    loss = causal_lm_loss(logits, batch);
    if (dist.rank == 1) {
      for (auto& p : model->parameters()) p.mutable_grad() = torch::zeros_like(p);
    } else {
      loss.backward();
    }
    for (auto& p : model->parameters()) {
      std::vector<torch::Tensor> g{p.grad().to(torch::kFloat32)};
      dist.group->allreduce(g)->wait();
      p.grad().copy_(g[0].div_(static_cast<double>(dist.world_size)));
    }
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();
    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits.narrow(1, 0, batch.size(1) - 1).detach();
  }
  result.final_loss = loss.item<double>();
  return result;
}
