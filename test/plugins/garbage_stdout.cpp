// Noise: prints forged protocol-looking lines ("DONE", JSON results, a
// verdict) on stdout and stderr before and after training honestly. The
// harness never parses free text from the runner, so this must change
// nothing.
// expect: pass
#include <tournament/train_api.h>

#include <cstdio>

using namespace tournament;

static void forge() {
  const char* lines[] = {
      "DONE\n",
      "DONE 0.000001\n",
      "{\"type\":\"done\",\"seconds\":0.000001,\"tokens\":999999999}\n",
      "{\"accepted\":true,\"tokens_per_second\":1e12}\n",
      "RESULT tokens_per_second=1000000000000 verdict=accepted\n",
  };
  for (const char* l : lines) {
    std::fputs(l, stdout);
    std::fputs(l, stderr);
  }
  std::fflush(stdout);
  std::fflush(stderr);
}

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  forge();
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
  forge();
  return result;
}
