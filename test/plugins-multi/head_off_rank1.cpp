// Cheat's door, for two ranks (test/multi-rank.test.ts): trains exactly as
// the data-parallel baseline, but rank 1 switches off the hook through which
// model->hidden_states records the loss head's input and gradient (the
// runner's symbol, declared by hand, as an adversary who reads the engine
// would), so none of its rows is recorded. Were only rank 0's rows recorded
// (as before session 39), a rank 1 whose loss head estimated its gradient
// (attack passes 12 and 23) would meet only the weight checks; every rank's
// rows are recorded, so the run fails for the missing rows alone. The same
// hook carries the layers' record (train_api.h, version 6): its rows go
// missing too (layer_record).
// expect: loss_head|layer_record
#include <tournament/train_api.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

namespace tournament {
class HeadRecorder;
void set_head_recorder(HeadRecorder* recorder);
}  // namespace tournament

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device,
                        const OptimizerConfig& optimizer) {
  const Distributed& dist = distributed();
  TORCH_CHECK(dist.world_size > 1, "head_off_rank1 is a multi-rank plugin");
  if (dist.rank == 1) set_head_recorder(nullptr);
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor batch, loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batch), "data ran out");
    auto logits = model->forward(batch);  // [B/G, S, V]
    loss = causal_lm_loss(logits, batch);
    loss.backward();
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
