// The submission contract, version 6. A submission is one C++ file that
// includes this header and defines `inner_steps` with exactly the signature
// below. The validator compiles it itself (pinned flags, against the runner's
// libtorch) and calls it in a sandboxed runner process. The runner refuses a
// plugin built against another TOURNAMENT_TRAIN_API_VERSION.
//
// What inner_steps receives
//   model      the engine's Qwen2 (model.h): parameters bf16, on `device`, in
//              train mode, without gradients (every call starts with none),
//              their storage owned by the validator. Update them
//              IN PLACE: the final weights are read from that storage, so
//              replacing a parameter tensor loses the update.
//   data       yields `num_steps` batches [batch, seq_len] int64 on `device`,
//              chosen by the validator at the start of the timed run. With
//              several ranks (below), this rank's share of each batch.
//   num_steps  how many optimizer steps to take: one per batch.
//   device     where the model lives.
//   optimizer  AdamW hyper-parameters (optim.h says exactly how the update is
//              computed on bf16 parameters).
//
// What inner_steps must do
//   Train on every token of every batch, one AdamW step per batch, loss as
//   causal_lm_loss (model.h), and call data.step_done() after each step
//   (version 3, below; data.wait_recorded() before each, version 4, lets the
//   record run beside your next step on CUDA), and let the validator record
//   the loss head's input and its gradient (version 5, below: automatic
//   where that input comes from model->hidden_states) and each layer's
//   residual, MLP output and their gradients (version 6, below: automatic
//   where the layers run through model->hidden_states). Anything else is yours:
//   kernels, CUDA graphs, checkpointing, fusions, precision tricks within
//   the verification tolerance (README, "Verification"), with every matrix
//   product's operands in bf16 or wider (FP8 operands are outside the
//   contract: the tolerance is measured for bf16 rounding).
//
// What it returns (TrainResult)
//   logits        of the last forward pass, [batch, seq_len - 1, vocab]
//                 (the positions that predict a next token), any float dtype.
//   total_tokens  batch * seq_len * num_steps that were trained on.
//   final_loss    the loss of the last step.
//
// Several ranks (version 2). A tournament may set gpus_per_evaluation = G > 1:
// then G runner processes, one per device, run this same inner_steps at once,
// rank r on the r-th device, and distributed() tells each which rank it is
// and hands it a process group over all G (c10d: NCCL on CUDA, Gloo on the
// CPU; include <torch/csrc/distributed/c10d/ProcessGroup.hpp> to use it). Each
// rank holds a full copy of the parameters in memory the validator owns, all
// initialised alike, and its data yields rows [r * B/G, (r + 1) * B/G) of every
// batch of B rows (a contiguous slice; batch_size() says B/G). The G ranks
// together train on every token of every batch, one AdamW step per batch over
// the whole batch (local_test/train.cpp does: all-reduce of the gradients,
// averaged, then the same AdamW on every rank). Each rank returns the logits
// of its own rows [B/G, seq_len - 1, vocab] and its own token count. The clock
// stops when the last rank has said DONE; then every rank's parameters must
// equal rank 0's, which are the ones verified. With G = 1, distributed() says
// rank 0 of 1 and has no group: a one-rank submission needs none of this.
//
// What the validator checks, from its own copy of the data and the weights it
// reads back: the loss of the final weights on a held-out batch, the returned
// logits, which parameters changed and by how much, against the official
// baseline (local_test/train.cpp) run on the same seed and data. The clock
// stops once inner_steps has returned, the runner has copied the logits out
// on the current CUDA stream and every stream of the device has finished
// (work queued on a side stream counts on the clock); then the runner process
// is killed at once. Work still running in other threads never lands.
#pragma once

#include <tournament/model.h>
#include <tournament/optim.h>

#define TOURNAMENT_TRAIN_API_VERSION 6

namespace c10d {
class ProcessGroup;
}

namespace tournament {

// This process's place among the evaluation's ranks (see "Several ranks").
struct Distributed {
  int64_t rank = 0;
  int64_t world_size = 1;
  c10d::ProcessGroup* group = nullptr;  // every rank's; null when world_size is 1
};
// Defined by the runner, valid for the life of the process.
const Distributed& distributed();

class DataIterator {
 public:
  virtual ~DataIterator() = default;
  // The next batch [batch, seq_len] int64 on the device; false when exhausted.
  virtual bool next(torch::Tensor* batch) = 0;
  virtual int64_t batch_size() const = 0;
  virtual int64_t seq_len() const = 0;
  // Call once after each optimizer step, once the parameters hold that
  // step's result and before anything changes them again (version 3). The
  // validator records them there (a copy of the parameter memory into host
  // memory it owns, on the CPU and on CUDA: README, Verification) and
  // afterwards repeats every step itself from the
  // weights recorded before it: each step must be the AdamW step of its own
  // batch's gradient at those weights, up to rounding (README, Verification,
  // "the trajectory"). The last step's result is the final weights; a call
  // after it records nothing. A run that records fewer steps fails, and so
  // does one whose recorded weights no AdamW step could have reached.
  //
  // On CUDA the copy (15 GB for a 7B model,
  // about 0.3 s over PCIe) runs on a stream of its own, after the work queued
  // so far on the current stream. By default step_done() then makes the
  // current stream wait for it: safe, but the card idles meanwhile.
  virtual void step_done() = 0;
  // Version 4: a plugin that calls wait_recorded() before its first
  // optimizer step takes that wait on itself. From then on it calls
  // wait_recorded() before each optimizer step writes the parameters; the
  // wait is placed on the current stream (the CPU does not block), so the
  // copy runs beside the forward and backward before it. A step_done()
  // without a wait_recorded() since the one before then fails the run. On
  // the CPU step_done() copies at once and this waits for nothing, but the
  // order is enforced there too.
  virtual void wait_recorded() = 0;
  // Version 5: the loss head's record. For every timed step the validator
  // records, for each row of the step's batch, the loss head's input (the
  // final norm's output, [rows, seq_len, hidden]) and its gradient, and
  // checks both: the gradient against the one it computes from that input
  // and the step's lm_head weight, the input against its own forward from
  // the weights the step started from (README, Verification, "the loss
  // head's record"). model->hidden_states (and so model->forward) records
  // both by itself when it runs with gradients: the input at once, the
  // gradient when backward reaches it. A submission that computes the
  // model's layers itself calls this instead, once per step for the batch's
  // rows (or once per group of them, e.g. per micro-batch), before
  // step_done(): input_ids [rows, seq_len] (rows of the step's batch, any
  // order; each row is matched to its batch by its tokens, and a row a
  // batch holds twice is recorded in both places; each row's last position,
  // which feeds no loss, is not read), hidden
  // [rows, seq_len, hidden] and hidden_grad, the gradient of
  // the step's loss (the mean over every row this rank trains on in the
  // step) with respect to hidden; any float dtype, on any device (copied
  // into bf16 host memory as the calling thread's current stream sees them
  // at the call: work on other streams must be ordered before it, and their
  // memory is free to change right after). Its arithmetic is part of the contract:
  // the reference's (linear_cross_entropy: the logits rounded to the
  // weight's dtype, log-softmax in float32, the logits' gradient rounded to
  // the weight's dtype before the products, float32 accumulation) or float32
  // throughout; the validator reads it against the nearer of the two, within
  // a tolerance of rounding (README, Verification). A row recorded twice
  // keeps its last record; a step whose rows are not all recorded fails the
  // run. A row that is no row of any timed batch throws here (the automatic
  // record of hidden_states skips it).
  virtual void record_loss_head(const torch::Tensor& input_ids, const torch::Tensor& hidden,
                                const torch::Tensor& hidden_grad) = 0;
  // Version 6: the layers' record. For every timed step the validator
  // records, for each decoder layer and each row of the step's batch, the
  // residual stream after the attention (x + attention(...), which the
  // post-attention norm normalises: [rows, seq_len, hidden]), the MLP's
  // output (down(silu(gate(n)) * up(n)) of n, that norm's output, before the
  // residual add), and the gradients of the step's loss with respect to that
  // output and to the MLP's input n. The judge then computes every layer
  // again from the record alone, each link from the one before, with the
  // weights the step started from: the layer's input (the embeddings, or the
  // layer before's residual plus its MLP output), the attention's residual,
  // the MLP's output, the loss head's input; and backward the MLP's input
  // gradient and each layer's output gradient from the one above (the loss
  // head's record's gradient at the top). Each recorded value must be that
  // computation up to one layer's rounding, in the reference's arithmetic
  // (model.cpp; linear_acc32's products) or float32 throughout (the nearer);
  // and each MLP weight's step must be the AdamW step of the gradient the
  // record gives (README, Verification, "the layers' record"). The layers of
  // model->hidden_states (and so model->forward) record everything by
  // themselves when they run with gradients (a checkpointed layer when its
  // forward is recomputed). A submission that computes the layers itself
  // calls record_layer(layer, input_ids, residual, mlp_output) in the forward
  // and record_layer_grad(layer, input_ids, mlp_output_grad, mlp_input_grad)
  // in the backward, for every layer (0 to num_hidden_layers - 1) and every
  // row of the step's batch (once for the batch or once per group of rows),
  // before step_done(); input_ids, the copy and the last position as for
  // record_loss_head. A step whose rows are not all recorded fails the run.
  virtual void record_layer(int64_t layer, const torch::Tensor& input_ids, const torch::Tensor& residual,
                            const torch::Tensor& mlp_output) = 0;
  virtual void record_layer_grad(int64_t layer, const torch::Tensor& input_ids, const torch::Tensor& mlp_output_grad,
                                 const torch::Tensor& mlp_input_grad) = 0;
};

struct TrainResult {
  torch::Tensor logits;  // [batch, seq_len - 1, vocab]
  int64_t total_tokens = 0;
  double final_loss = 0.0;
};

}  // namespace tournament

tournament::TrainResult inner_steps(tournament::Qwen2ForCausalLM& model, tournament::DataIterator& data,
                                    int64_t num_steps, torch::Device device,
                                    const tournament::OptimizerConfig& optimizer);

// The runner finds a submission through these two C symbols, defined here so a
// submission needs nothing but inner_steps. The runner and the engine include
// this header with TOURNAMENT_HOST defined and get declarations only.
extern "C" int tournament_train_api_version();
extern "C" void tournament_call_inner_steps(tournament::Qwen2ForCausalLM* model, tournament::DataIterator* data,
                                            int64_t num_steps, const torch::Device* device,
                                            const tournament::OptimizerConfig* optimizer,
                                            tournament::TrainResult* out);
#ifndef TOURNAMENT_HOST
extern "C" __attribute__((visibility("default"))) int tournament_train_api_version() {
  return TOURNAMENT_TRAIN_API_VERSION;
}
extern "C" __attribute__((visibility("default"))) void tournament_call_inner_steps(
    tournament::Qwen2ForCausalLM* model, tournament::DataIterator* data, int64_t num_steps,
    const torch::Device* device, const tournament::OptimizerConfig* optimizer, tournament::TrainResult* out) {
  *out = inner_steps(*model, *data, num_steps, *device, *optimizer);
}
#endif
