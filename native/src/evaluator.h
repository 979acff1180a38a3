// The trusted side of an evaluation. It owns the parameter, batch and logits
// memory, spawns a fresh sandboxed runner per run, runs the clock (on the
// calling native thread, GO sent to DONE received), kills the runner at DONE,
// and measures the result from its own view of the memory: the probe loss of
// the final weights, the returned logits, the weight update per tensor.
// Thresholds are not applied here: the caller judges the numbers.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "protocol.h"

namespace tournament {

// An error the caller's input caused (a bad checkpoint, config or option),
// not an engine bug: the addon marks it so that the CLI shows it as the
// user's to fix, without a stack.
struct UserInputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One tensor of a safetensors checkpoint: where its bytes are. The caller has
// checked names, shapes, dtypes and byte ranges against the model
// (src/engine/safetensors.ts); the reads here still refuse a short file.
struct CheckpointTensor {
  std::string name, file;
  torch::Dtype dtype = torch::kBFloat16;
  int64_t offset = 0, nbytes = 0;
};
// Reads `t`'s bytes into `dst` (any device and dtype; converted once).
void read_checkpoint_tensor(const CheckpointTensor& t, torch::Tensor dst);

struct EvalConfig {
  Qwen2Config model;
  torch::Device device{torch::kCPU};
  // Several ranks (train_api.h): one device per rank, rank 0's being
  // `device`; empty or one entry: one rank on `device`.
  std::vector<torch::Device> rank_devices;
  torch::Dtype dtype = torch::kBFloat16;
  AttentionKernel attention = AttentionKernel::kAuto;
  int64_t batch_size = 0, seq_len = 0, steps = 0, warmup_steps = 0;
  OptimizerConfig optimizer;
  torch::Tensor probe;  // [Bp, seq_len] int64, held out from every run's data (moved to `device`)
  double start_timeout_s = 120, warmup_timeout_s = 600, timed_timeout_s = 600;
  // Relative size of each run's seeded perturbation of a checkpoint start:
  // w * (1 + sigma * N(0, 1)), drawn in float32 and rounded once (0: none).
  double checkpoint_perturbation = 0;
  // Whether every timed step's weights and the loss head's record are
  // recorded and the judge repeats the steps (trajectory.cpp): where the
  // device's limits for those readings are calibrated, and in calibrations.
  bool record_trajectory = false;
  // With it, whether every layer's residual, MLP output and their gradients
  // are recorded too (train_api.h, version 6) and the judge reads them: where
  // the device's limits for those readings are calibrated, and in calibrations.
  bool record_layers = false;
};

struct RunInputs {
  std::vector<std::string> argv;  // the sandbox, the runner and the compiled submission
  uint64_t seed = 0;           // initialisation of the timed run
  uint64_t warmup_seed = 0;    // initialisation for warmup: drawn independently of `seed`
  torch::Tensor warmup_tokens; // [warmup_steps * B, S] int64
  torch::Tensor timed_tokens;  // [steps * B, S] int64
  std::string log_path;        // the runner's stdout and stderr go here (created; in its scratch directory)
  // The official baseline's run, the one the others are judged against: the
  // probe loss at `seed`'s initialisation is measured before the spawn, and no
  // trajectory is recorded or replayed (nothing judges the reference's own steps).
  bool reference = false;
};

struct RunOutcome {
  bool completed = false;      // reached DONE
  std::string failure_code;    // FailureCode of src/harness/types.ts when !completed
  std::string failure_message;
  double seconds = 0;          // trusted clock
  double overhead_seconds = 0; // everything else of the run
  int64_t reported_tokens = 0;
  double reported_loss = 0;
  int64_t reported_peak_memory = 0;  // runner's own account, informational
  double probe_loss = 0;       // recomputed here from the final weights
  double initial_probe_loss = 0;  // the same batch at the run's initialisation (the reference's run)
  double checkpoint_seconds = 0;  // copying the checkpoint into the parameter memory: outside the clock, in overhead
  // Loss of the final weights on each cell of the timed batches, batch by
  // batch and row by row (kCellsPerRow cells of consecutive positions per
  // row): tokens the run skipped were not lowered by training, wherever they lie.
  std::vector<double> cell_losses;
  // The trajectory (trajectory.cpp): per timed step, whether the weights it
  // started from were recorded (the run's start for the first; the plugin's
  // data.step_done() for the others) and, per kind of tensor pooled over the
  // layers, how far the step's recorded result (the final weights for the
  // last) lands from the judge's own AdamW step of that batch's gradient at
  // those weights, in units of what rounding-size gradient noise moves it.
  // Empty where nothing is recorded (CUDA, for now; a run of one step).
  struct TrajectoryStep {
    bool recorded = false;  // false: the weights before this step were not recorded (or not finite)
    // Elements of the step's result further from the weights before it than
    // any AdamW step can move them (adamw_reach): states no training made.
    int64_t out_of_reach = 0;
    std::vector<std::pair<std::string, double>> kinds;
    // The loss head's record of the step (train_api.h, version 5), relative
    // errors over the recorded rows (Frobenius; infinite where a row is
    // missing or not finite): the input against the judge's own forward from
    // the weights the step started from, the gradient against the nearer of
    // the judge's own two from that recorded input (the reference's
    // arithmetic, float32 throughout).
    double head_input_error = 0, head_grad_error = 0;
    int64_t head_rows_missing = 0;  // rows with a non-finite input or gradient (unrecorded rows are NaN)
    // The layers' record of the step (train_api.h, version 6), where
    // recorded: the worst row's relative error, over the layers, of each
    // recorded value against the judge's own computation of it from the
    // record's link before it (forward: the attention's residual from the
    // layer's input, the MLP's output, the loss head's input; backward: the
    // MLP's input gradient, each layer's output gradient from the one above),
    // the nearer of two arithmetics (the reference's, float32 throughout);
    // and per MLP kind, pooled over the layers, the trajectory reading of the
    // step judged from the gradient the record gives (its own AdamW moments
    // from those gradients), in the unit of `kinds`.
    double layer_forward_error = 0, layer_backward_error = 0;
    // The largest share, over the MLP's forward and input-gradient links and
    // a few sizes, of the product's small-term part that the recorded value
    // lacks (trajectory.cpp, small_term_fit): about 0 for honest rounding.
    double layer_small_terms = 0;
    // The same links read by the error's energy: its excess along the small
    // terms' weight vectors over what the rest's give, as a size relative to
    // the value (small_term_fit): about 0 for honest rounding (it lands evenly,
    // or on the large terms), most of the error where small terms were
    // dropped without bias (attack pass 34).
    double layer_small_energy = 0;
    // The MLP weights' steps against a cheat's: for each small-term part of
    // the weight gradients (each position's smallest entries of an operand,
    // or the products under one threshold), the elements whose run weight
    // only the judge's step without the part gives over those only its whole
    // step gives, pooled over the kinds, layers and steps so far
    // (trajectory_errors): 0.39 at most for honest two-halves accumulation
    // (more micro-batches read wider), more where the part was left out.
    double mlp_grad_small_terms = 0;
    int64_t layer_rows_missing = 0;  // (layer, row) pairs with a non-finite record
    // Per MLP and attention kind, the trajectory reading of the step judged
    // from the gradient the layers' record gives (its own moments).
    std::vector<std::pair<std::string, double>> record_kinds;
  };
  std::vector<TrajectoryStep> trajectory;
  // Wall-clock seconds of each phase of the run, in order (where an
  // evaluation's time goes). Timing capture only: nothing reads it to decide.
  std::vector<std::pair<std::string, double>> phase_seconds;
};

struct Comparison {
  double logits_rel_error = 0;
  double update_rel_error = 0;      // ||u - u_ref|| / ||u_ref|| over all parameters
  double max_tensor_rel_error = 0;  // worst tensor
  // Per kind of tensor (its name with the layer index starred, e.g.
  // "layers.*.self_attn.q_proj.weight"): ||u - u_ref|| / ||u_ref|| pooled over
  // every layer. A shortcut on one kind of computation (a projection's
  // gradient skipped or reused) moves every layer's tensor of that kind,
  // while honest rounding noise averages out over the layers.
  std::vector<std::pair<std::string, double>> kind_rel_errors;
  // Per group of tensors (attention, mlp, norm, embedding, head): how much
  // the last batch's and the probe's mean loss drop when this run's tensors
  // of the group are replaced by the reference's, the rest kept (the run's
  // loss minus the hybrid's). A shortcut in one group's gradients (stale or
  // skipped) leaves that group less trained on the last batch, and an
  // over-update elsewhere that hides it in the whole model's loss shows in
  // its own group, with the other sign.
  struct GroupShift {
    std::string group;
    double last_batch = 0, probe = 0;
  };
  std::vector<GroupShift> group_shifts;
  // Seconds of the comparison's parts (compare_weights, compare_positions, compare_groups), in order.
  std::vector<std::pair<std::string, double>> phase_seconds;
  // Per timed batch t: this run's lm_head minus the reference's, projected on
  // the unit direction of that batch's own dense loss-head gradient part
  // (softmax times hidden, P^T H / N, less its mean-field part and less the
  // mean of every timed batch's, at the run's final weights), over the norm of
  // the reference's lm_head update. Honest rounding differences point nowhere
  // in particular; a step that reused another batch's dense part instead of
  // computing its own leaves a difference along both batches' directions.
  std::vector<double> head_alignment;
  // Per timed batch t: the same difference, read one position at a time. For
  // each position i, a_i = (p_i - p_mean)^T dW (h_i - h_mean) is its size
  // along that position's own rank-one part of the dense gradient; b_i is the
  // same with another position's probabilities (row r + B/2 of the same
  // four-row block, same place in the sequence). The excess is
  // sum a^2 / sum b^2 - 1: honest differences have no preference for matched
  // pairs, while a step that estimated its dense part from a sample of
  // positions leaves its error along each position's own direction, with
  // random signs the batch-level projection averages away. Where lm_head's
  // difference is below kPositionJitter of its update, in proportion to
  // (e / kPositionJitter)^2 (position_checks.cpp says why).
  std::vector<double> head_position_excess;
  // Per timed batch t: head_position_excess's reading for every linear layer
  // of the decoder (q, k, v, o, gate, up, down), pooled over the layers per
  // kind; the kind with the largest excess. For position i of the batch, at
  // the run's final weights: a_i = dy_i^T dW x_i, where x_i is the layer's
  // input, dy_i the loss gradient at its output (both centred on their
  // four-row block) and dW this run's weight less the reference's; b_i pairs
  // dy of the position half the block away with x_i. A step whose weight
  // gradient came from a sample of the positions (scaled up) leaves dW along
  // each position's own dy_i x_i^T, with a sign per position; honest rounding
  // differences have no preference for matched pairs. Damped as
  // head_position_excess by the kind's relative difference.
  struct LayerPositions {
    std::string kind;
    double excess = 0;
  };
  std::vector<LayerPositions> layer_positions;
  // Per timed batch, per kind of decoder linear layer (pooled over the
  // layers): sum b_i^2 over sum |dy_j|^2 |x_i|^2 over the difference's mean
  // square, the difference's energy between mismatched positions against what
  // a white difference of the same size would give (1). Informational per
  // batch; layer_pair_excess is what the judge reads.
  std::vector<std::vector<std::pair<std::string, double>>> layer_pair_energy;
  // Per kind: the mean of layer_pair_energy over the timed batches less 1,
  // damped below kPositionJitter as the position excess. An estimate of a
  // weight gradient built from mixed positions (a count sketch) leaves its
  // error along the data's own directions, which every batch shares, where
  // rounding differences spread evenly (the MLP's limit: mlp_pair_energy_excess).
  std::vector<std::pair<std::string, double>> layer_pair_excess;
  // The same for lm_head per timed batch (probabilities and hidden states in
  // place of dy and x). Informational.
  std::vector<double> head_pair_energy;
  double changed_share = 0, reference_changed_share = 0;
  std::vector<std::string> frozen;  // changed in the reference, unchanged here
  // The parameter or logits memory differs from what it held when the runner
  // had just been killed: something of the run outlived the kill.
  bool changed_after_kill = false;
};

// Cells per row of a timed batch for cell_losses: fine enough that skipping
// any quarter of a row's positions shows in some cell, coarse enough that a
// cell averages hundreds of tokens on the 7B shape.
constexpr int64_t kCellsPerRow = 4;

// A parameter's kind: its name with every all-digit segment starred
// ("model.layers.3.mlp.up_proj.weight" -> "model.layers.*.mlp.up_proj.weight").
std::string tensor_kind(const std::string& name);

class Evaluator {
 public:
  explicit Evaluator(EvalConfig cfg);
  ~Evaluator();

  // Every run starts from this checkpoint from now on instead of the seeded
  // random initialisation: it is read once into one host copy in the
  // parameter layout (pinned on CUDA). Throws UserInputError for a tensor the
  // model lacks or lacks a tensor, or a file too short.
  void load_checkpoint(const std::vector<CheckpointTensor>& tensors);
  bool has_checkpoint() const { return checkpoint_.defined(); }

  // One run: scrub, spawn, warmup, timed call, kill, probe and cell losses.
  // Never throws for a misbehaving runner: that is a failed outcome. With
  // several ranks, one sandbox holds every rank's runner and the clock spans
  // them all (GO to each, stopped at the last DONE).
  RunOutcome run(const RunInputs& in, const std::function<void(const std::string&)>& progress);

  // Compares the last run's memory (weights, logits) with a kept run's.
  Comparison compare_last_with(int64_t kept_id, uint64_t seed);
  int64_t keep_last();  // keeps the last run's results; returns an id
  void release(int64_t kept_id);

 private:
  struct Kept {
    torch::Tensor buffer;                // host bytes the views below live in
    std::vector<torch::Tensor> weights;  // views of buffer, per parameter
    torch::Tensor logits;                // view of buffer
    uint64_t seed;
  };
  // One run, phase by phase (evaluator.cpp); a phase that can fail returns
  // false with the reason in the RunState.
  struct RunState;
  void check_inputs(const RunInputs& in) const;
  void prepare(RunState& st);  // before the spawn: initial probe, scrub
  void spawn(RunState& st);
  bool start_up(RunState& st);
  bool warmup(RunState& st);
  bool timed(RunState& st);
  void kill_and_fingerprint(RunState& st);
  bool ranks_agree(RunState& st);  // every rank's parameters equal rank 0's at DONE
  void measure(RunState& st);

  // Ranks 1..G-1 (rank 0's regions are params_ and logits_).
  struct OtherRank {
    torch::Device device;
    SharedRegion params, logits;
    torch::Tensor logits_view;  // [B / G, S-1, V]
  };
  int ranks() const { return 1 + static_cast<int>(other_ranks_.size()); }
  void allocate_other_ranks();
  // Rank 0's parameter region, whole, into every other rank's.
  void replicate_parameters();
  void synchronize_ranks();
  torch::Tensor rank_logits(int r) const;        // rank r's returned rows of the logits
  torch::Tensor batch_rows(int64_t rows) const;  // the first `rows` rows of the batch region

  // A run's start, in three parts. The public part: the checkpoint, copied
  // whole (nothing without one); outside the clock, timed into
  // checkpoint_seconds_. The seeded part, only once the seed may be used:
  // the whole random initialisation, or the checkpoint's perturbation.
  // init_parameters: both.
  void write_public_start();
  void write_seeded_start(uint64_t seed);
  void init_parameters(uint64_t seed);
  // The start of the run seeded `seed` for one parameter (the model's
  // `index`-th) into `dst`: the parameter memory, or a temporary to compare with.
  void start_tensor(torch::Tensor& dst, const std::string& name, size_t index, uint64_t seed);
  // Overwrites every shared region of every rank before a runner is spawned:
  // nothing of an earlier run (the reference's weights, logits, batches) is
  // there to read.
  void scrub(uint64_t warmup_seed);
  double probe_loss();
  // Mean next-token loss of the current weights on each cell of `tokens` [R, S]:
  // [R, kCellsPerRow] flattened, each row's S-1 predicted positions cut into
  // kCellsPerRow runs of consecutive positions. A few rows at a time (a 7B
  // model's logits for 16 x 1024 tokens are 10 GB in float32).
  std::vector<double> cell_losses(const torch::Tensor& tokens);
  // Comparison::group_shifts, from the kept run's weights; leaves the
  // parameter memory as it found it.
  std::vector<Comparison::GroupShift> group_shifts(const Kept& ref);
  // Comparison::head_alignment, head_position_excess and layer_positions,
  // against the kept run's weights (position_checks.cpp); reads only.
  void position_checks(const Kept& ref, uint64_t seed, Comparison& c);
  // RunOutcome::trajectory of the last run (trajectory.cpp): every timed
  // step repeated from the recorded weights before it, by a model and an
  // optimizer of its own over memory of its own (freed when it returns).
  // Reads each byte of the trajectory region once.
  std::vector<RunOutcome::TrajectoryStep> trajectory_errors(const torch::Tensor& timed_tokens, uint64_t seed);
  // Throws UserInputError, before any run, where the replay above cannot fit
  // on the card beside the trusted side's regions (trajectory.cpp).
  void check_replay_fits() const;
  // Keyed hash of every rank's parameter and logits memory (fingerprint.h),
  // with a key drawn right after the kill.
  std::vector<int64_t> memory_digest();
  void release_device_cache();

  EvalConfig cfg_;
  protocol::ParamLayout layout_;
  SharedRegion params_, data_, logits_;
  SharedRegion trajectory_;      // [trajectory_slots_, params_.size()] bytes, then the loss head's record; host
  int64_t trajectory_slots_ = 0;  // steps - 1 where recorded, else 0
  size_t trajectory_bytes_ = 0;   // the slots, the loss head's record and the MLP's; 0 where nothing is recorded
  torch::Tensor logits_view_;  // [B, S-1, V] over logits_
  Qwen2ForCausalLM model_{nullptr};  // the trusted view of the parameter memory (rank 0's)
  std::vector<OtherRank> other_ranks_;
  std::map<int64_t, Kept> kept_;
  // Host buffers of released kept runs, for reuse (take_host_buffer).
  static constexpr size_t kSpareHostBuffers = 2;
  std::vector<torch::Tensor> spare_host_;
  torch::Tensor take_host_buffer(int64_t bytes);
  int64_t next_id_ = 1;
  uint64_t last_seed_ = 0;
  // The last run's last timed batch [B, S] and the judge's losses of its
  // final weights on it and on the probe (from measure), for group_shifts.
  torch::Tensor last_batch_;
  double last_batch_loss_ = 0, last_probe_loss_ = 0;
  torch::Tensor timed_tokens_;  // the last run's timed batches [steps * B, S], for position_checks
  std::vector<int64_t> post_kill_digest_;  // of the last run, taken right after the kill
  uint64_t digest_key_ = 0;                 // drawn after the last run's kill
  torch::Tensor checkpoint_;                   // host, the parameter layout's bytes; undefined: random starts
  std::vector<torch::Tensor> checkpoint_views_;  // per model parameter, into checkpoint_
  double checkpoint_seconds_ = 0;              // of the current run
};

}  // namespace tournament
