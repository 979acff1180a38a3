// Sandbox probe: tries to open a TCP connection to 127.0.0.1:47631, where the
// adversarial test listens on the host. If it connects it calls std::abort()
// ('crash'); the sandbox has its own network namespace, so it cannot, and
// then it trains honestly.
// expect: pass (and the test asserts its server saw no connection)
#include <tournament/train_api.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

using namespace tournament;

constexpr int kPort = 47631;

static bool can_connect() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(kPort);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  if (can_connect()) std::abort();

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
