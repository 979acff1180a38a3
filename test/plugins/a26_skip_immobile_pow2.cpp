// Attack pass 26 (session 38, fresh context, CPU, against ddd0ebe), attempt A's first version: weight-gradient
// entries whose element no AdamW step could move are not computed (zeroed after backward here; a sampled
// dense-dense product over the mobile elements would skip them, N multiply-adds each). A bf16 element w with
// |w| >= 2^-5 has half a bf16 spacing >= 1.22e-4, while one AdamW step moves it by at most about 1.02e-4 +
// 1e-5 |w|. This version takes the spacing ABOVE |w| for both sides, so it also drops the elements exactly at a
// power of two stepping toward zero, into the finer spacing below, which do move: a few real moves skipped on top
// of provably useless work (5.3% of the tiny run in all; about 3.7% of a 7B run from a random start, by the pass).
// Against ddd0ebe: REJECTED by head positions only (2.72, 2.53 against 1.62, seeds 26000-1); every trajectory
// reading 0, because the shortfall took the wider spacing above w for both sides. Since session 38 the shortfall
// takes half the gap on the judged value's side (`half_gap`, trajectory.cpp): lm_head 1.88 to 2.17 against 0.16,
// MLP 28 to 29 against 26, attention 99 to 171 against 75 (seeds 38700-1). The pass's corrected version (the
// spacing below |w|) skips only work that cannot change the result: bit for bit the reference's, accepted, and not
// a cheat (docs/attack-passes.md, 26).
// expect: trajectory|head_positions
#include <tournament/train_api.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <algorithm>

using namespace tournament;

namespace {

// Which decoder layers recompute their activations in backward instead of
// keeping them. Keeping is faster (no second forward), so as many layers as
// the free memory allows keep theirs; the first ones are checkpointed.
std::vector<bool> plan_checkpointing(Qwen2ForCausalLM& model, int64_t tokens, torch::Device device) {
  const int64_t layers = model->config.num_hidden_layers;
  const int64_t available = available_device_memory(device);  // -1 on the CPU
  if (available < 0) return {};                                // the tiny CPU model keeps everything
  int64_t param_bytes = 0;
  for (const auto& p : model->parameters()) param_bytes += p.numel() * p.element_size();
  // Besides activations: AdamW's two moments (allocated first), then, at the
  // peak, the loss's chunks, the last step's logits, one layer's backward
  // temporaries and some room for fragmentation. The gradients replace the
  // activations as backward frees them.
  const int64_t moments = 2 * param_bytes;
  const int64_t reserve = int64_t(20) << 30;
  const auto dtype = model->parameters()[0].scalar_type();
  const int64_t per_layer = layer_activation_bytes(model->config, tokens, dtype);
  const int64_t keep = std::clamp<int64_t>((available - moments - reserve) / per_layer, 0, layers);
  std::vector<bool> checkpointed(layers, false);
  for (int64_t i = 0; i < layers - keep; ++i) checkpointed[i] = true;
  return checkpointed;
}

// Several ranks: each rank's gradients are of its own rows, so sum them over
// the ranks and divide: every rank then applies the whole batch's mean
// gradient (equal rows per rank, equal tokens per row) and the ranks stay
// identical. In buckets of at most 64 Mi elements (one buffer for a 7B model
// would be another 15 GB), in the gradients' dtype on CUDA (NCCL), in float32
// on the CPU (Gloo).
void all_reduce_gradients(Qwen2ForCausalLM& model, const Distributed& dist) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad());
  const int64_t bucket = int64_t(64) << 20;
  for (size_t i = 0; i < grads.size();) {
    size_t end = i;
    int64_t elements = 0;
    std::vector<torch::Tensor> flat;
    while (end < grads.size() && (end == i || elements + grads[end].numel() <= bucket)) {
      elements += grads[end].numel();
      flat.push_back(grads[end++].reshape({-1}));
    }
    const auto wire = grads[i].is_cuda() ? grads[i].scalar_type() : torch::kFloat32;
    std::vector<torch::Tensor> buffer{torch::cat(flat).to(wire)};
    dist.group->allreduce(buffer)->wait();
    buffer[0].div_(static_cast<double>(dist.world_size));
    int64_t offset = 0;
    for (size_t k = i; k < end; ++k) {
      grads[k].copy_(buffer[0].narrow(0, offset, grads[k].numel()).view_as(grads[k]));
      offset += grads[k].numel();
    }
    i = end;
  }
}

}  // namespace

TrainResult inner_steps(Qwen2ForCausalLM& model, DataIterator& data, int64_t num_steps, torch::Device device,
                        const OptimizerConfig& optimizer) {
  // Every batch up front: next() copies from host memory and waits for the
  // copy, which between steps would leave the GPU idle.
  std::vector<torch::Tensor> batches(num_steps);  // [B, S] int64 each
  for (int64_t step = 0; step < num_steps; ++step) {
    TORCH_CHECK(data.next(&batches[step]), "data ran out after ", step, " of ", num_steps, " steps");
  }
  const int64_t B = data.batch_size(), S = data.seq_len();
  model->set_checkpointed_layers(plan_checkpointing(model, B * S, device));

  const Distributed& dist = distributed();
  AdamW opt(model->parameters(), optimizer);
  TrainResult result;
  torch::Tensor loss;
  for (int64_t step = 0; step < num_steps; ++step) {
    const auto& batch = batches[step];
    auto hidden = model->hidden_states(batch);  // [B, S, H]; records the loss head's input and gradient (train_api.h, version 5)
    torch::Tensor logits;                       // the last step's, returned
    if (step == num_steps - 1) logits = torch::empty({B, S - 1, model->config.vocab_size}, hidden.options());
    loss = linear_cross_entropy(hidden, model->lm_head_weight(), batch, logits);  // scalar, float32
    loss.backward();
    {
      torch::NoGradGuard ng;
      const double lr = optimizer.lr, wd = optimizer.weight_decay;
      for (auto& item : model->named_parameters()) {
        auto& p = item.value();
        if (p.dim() != 2 || item.key().find("embed_tokens") != std::string::npos || !p.grad().defined()) continue;
        auto w = p.to(torch::kFloat32).abs();
        // The spacing below |w| (an exact power of two has the finer one there: first try forgot it, see header).
        auto spacing = torch::ldexp(torch::ones_like(w), std::get<1>(torch::frexp(w)) - 8);  // the spacing above |w| only (see the header)
        auto immobile = (lr * 1.03 * 1.05 + lr * wd * w) < spacing * 0.5;  // reach <= 1.05 for 5 steps
        p.mutable_grad().masked_fill_(immobile, 0);
      }
    }
    if (dist.world_size > 1) all_reduce_gradients(model, dist);
    data.wait_recorded();  // the previous step's weights were copied out beside this step's work
    opt.step();
    data.step_done();  // the weights after this step, for the trajectory check
    opt.zero_grad();

    result.total_tokens += batch.numel();
    if (step == num_steps - 1) result.logits = logits;  // [B, S-1, V]
  }
  if (loss.defined()) result.final_loss = loss.item<double>();
  return result;
}
