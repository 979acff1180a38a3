// Attack: defines TOURNAMENT_HOST before the header, so the header only
// declares the entry points, and writes them by hand:
// tournament_train_api_version() returns 999. The runner must refuse the
// plugin before calling anything in it.
// expect: api_version
#define TOURNAMENT_HOST
#include <tournament/train_api.h>
#undef TOURNAMENT_HOST

using namespace tournament;

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  TrainResult result;
  torch::Tensor batch;
  while (data.next(&batch)) result.total_tokens += batch.numel();
  return result;
}

extern "C" __attribute__((visibility("default"))) int tournament_train_api_version() { return 999; }

extern "C" __attribute__((visibility("default"))) void tournament_call_inner_steps(
    Qwen2ForCausalLM* model, DataIterator* data, int64_t num_steps, const torch::Device* device,
    const OptimizerConfig* optimizer, TrainResult* out) {
  *out = inner_steps(*model, *data, num_steps, *device, *optimizer);
}
