// Cheat attempt: the plugin shares its process with the runner, so it can
// write protocol messages on the control socket (fd 3) itself. During warmup
// it sends a WARM of its own, then trains and returns, so the runner's real
// WARM follows: a message out of turn. The trusted side reads exactly one
// message per phase and checks that nothing else is waiting before it sends
// the next command, so a forged message is a protocol failure (and the only
// message that ends the clock, DONE, means "the call returned": sending it
// early is returning early, with whatever the memory holds).
// expect: protocol
#include <tournament/train_api.h>

#include <sys/socket.h>

#include <cstdint>

using namespace tournament;

namespace {

struct Header {
  uint32_t magic;
  uint32_t type;
};
constexpr uint32_t kMagic = 0x544e5254, kWarm = 4;  // protocol.h: "TRNT", Type::kWarm
int calls = 0;

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  if (++calls == 1) {
    const Header h{kMagic, kWarm};
    send(3, &h, sizeof h, MSG_NOSIGNAL);
  }
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
