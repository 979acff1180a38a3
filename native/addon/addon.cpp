// The Node binding: thin. All validation happens in TypeScript (src/engine/);
// here options are read and long work runs off the JS thread (one mechanism,
// Task). Native errors come back as JS Errors with the engine's message;
// those the caller's input caused (tournament::UserInputError) carry
// `code: ERR_TOURNAMENT_USER_INPUT`, so that src/engine/native.ts can tell
// them from engine bugs.
#include <napi.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>

#include "../src/compat.h"
#include "../src/evaluator.h"

namespace {

using tournament::Qwen2Config;
using tournament::Qwen2ForCausalLM;

using tournament::UserInputError;

constexpr const char* kUserInputCode = "ERR_TOURNAMENT_USER_INPUT";

std::string native_message(const std::exception& e) {
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

// The JS Error for a native error message, marked when the user's input caused it.
Napi::Error js_error(Napi::Env env, const std::string& message, bool user_input) {
  auto err = Napi::Error::New(env, message);
  if (user_input) err.Value().Set("code", Napi::String::New(env, kUserInputCode));
  return err;
}

// Runs `fn`, turning any C++ exception into a JS Error with its message.
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw js_error(env, native_message(e), dynamic_cast<const UserInputError*>(&e) != nullptr);
  }
}

torch::Dtype parse_dtype(const std::string& s) {
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float32") return torch::kFloat32;
  if (s == "float16") return torch::kFloat16;
  throw UserInputError("unknown dtype " + s);
}

// A device the user named (--device): one this build can use, or a UserInputError.
torch::Device parse_device(const std::string& s) {
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(s);
  } catch (const c10::Error&) {
    throw UserInputError("unknown device '" + s + "' (cpu, cuda or cuda:N)");
  }
  if (d.is_cuda()) {
    const auto n = torch::cuda::device_count();
    if (n == 0) throw UserInputError("device " + s + ": this engine build sees no CUDA device");
    if (d.has_index() && d.index() >= static_cast<int64_t>(n)) {
      throw UserInputError("device " + s + ": there are " + std::to_string(n) + " CUDA devices");
    }
  } else if (!d.is_cpu()) {
    throw UserInputError("device " + s + ": only cpu and cuda are supported");
  }
  return d;
}

std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    default: return std::string(c10::toString(d));
  }
}

torch::Tensor int32_tensor(const Napi::Value& v) {
  auto arr = v.As<Napi::Int32Array>();
  // Copy: the JS buffer may move or be collected while native work runs.
  return torch::from_blob(arr.Data(), {static_cast<int64_t>(arr.ElementLength())}, torch::kInt32).to(torch::kInt64);
}

Napi::Float32Array to_float32_array(Napi::Env env, const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto out = Napi::Float32Array::New(env, c.numel());
  std::memcpy(out.Data(), c.data_ptr<float>(), c.numel() * sizeof(float));
  return out;
}

Napi::Array shape_array(Napi::Env env, at::IntArrayRef sizes) {
  auto a = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) a.Set(i, Napi::Number::New(env, static_cast<double>(sizes[i])));
  return a;
}

double num(const Napi::Object& o, const char* k) { return o.Get(k).As<Napi::Number>().DoubleValue(); }
int64_t i64(const Napi::Object& o, const char* k) { return o.Get(k).As<Napi::Number>().Int64Value(); }

// The Hugging Face config fields the engine uses (validated in TypeScript).
Qwen2Config read_config(const Napi::Object& c) {
  Qwen2Config cfg;
  cfg.vocab_size = i64(c, "vocab_size");
  cfg.hidden_size = i64(c, "hidden_size");
  cfg.intermediate_size = i64(c, "intermediate_size");
  cfg.num_hidden_layers = i64(c, "num_hidden_layers");
  cfg.num_attention_heads = i64(c, "num_attention_heads");
  cfg.num_key_value_heads = i64(c, "num_key_value_heads");
  cfg.max_position_embeddings = i64(c, "max_position_embeddings");
  cfg.rope_theta = num(c, "rope_theta");
  cfg.rms_norm_eps = num(c, "rms_norm_eps");
  cfg.tie_word_embeddings = c.Get("tie_word_embeddings").As<Napi::Boolean>().Value();
  try {
    cfg.validate();
  } catch (const c10::Error& e) {
    throw UserInputError(std::string("model config: ") + e.what_without_backtrace());
  }
  return cfg;
}

std::vector<tournament::CheckpointTensor> read_checkpoint_entries(const Napi::Array& arr) {
  std::vector<tournament::CheckpointTensor> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto o = arr.Get(i).As<Napi::Object>();
    out.push_back({o.Get("name").As<Napi::String>(), o.Get("file").As<Napi::String>(),
                   parse_dtype(o.Get("dtype").As<Napi::String>()), i64(o, "offset"), i64(o, "nbytes")});
  }
  return out;
}

// The one async mechanism: `work` runs on a worker thread and may report
// progress strings (delivered to `on_progress` on the JS thread); the promise
// resolves with `finish(env)`, or rejects with the native error, marked when
// the user's input caused it. `busy` is the owner's flag: set here (a second
// call while one runs is refused), cleared when the promise settles.
class Task : public Napi::AsyncProgressQueueWorker<std::string> {
 public:
  using Progress = std::function<void(const std::string&)>;
  using Work = std::function<void(const Progress&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise Start(Napi::Env env, std::atomic<bool>& busy, const char* what, Work work,
                             Finish finish = nullptr, Napi::Function on_progress = Napi::Function()) {
    if (busy.exchange(true)) throw Napi::Error::New(env, std::string(what) + " is busy with another call");
    auto* t = new Task(env, busy, std::move(work), std::move(finish), on_progress);
    auto promise = t->deferred_.Promise();
    t->Queue();  // the worker deletes itself once settled
    return promise;
  }

  void Execute(const ExecutionProgress& progress) override {
    try {
      work_([&](const std::string& s) { progress.Send(&s, 1); });
    } catch (const std::exception& ex) {
      user_input_ = dynamic_cast<const UserInputError*>(&ex) != nullptr;
      SetError(native_message(ex));
    }
  }
  void OnProgress(const std::string* s, size_t n) override {
    if (progress_cb_.IsEmpty()) return;
    Napi::HandleScope scope(Env());
    for (size_t i = 0; i < n; ++i) progress_cb_.Call({Napi::String::New(Env(), s[i])});
  }
  void OnOK() override {
    busy_ = false;
    deferred_.Resolve(finish_ ? finish_(Env()) : Env().Undefined());
  }
  void OnError(const Napi::Error& err) override {
    busy_ = false;
    deferred_.Reject(js_error(Env(), err.Message(), user_input_).Value());
  }

 private:
  Task(Napi::Env env, std::atomic<bool>& busy, Work work, Finish finish, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<std::string>(env), busy_(busy), work_(std::move(work)),
        finish_(std::move(finish)), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) progress_cb_ = Napi::Persistent(on_progress);
  }
  std::atomic<bool>& busy_;
  Work work_;
  Finish finish_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_cb_;
  bool user_input_ = false;
};

tournament::OptimizerConfig read_optimizer(const Napi::Object& opt) {
  return {num(opt, "lr"), num(opt, "weight_decay"), num(opt, "beta1"), num(opt, "beta2"), num(opt, "eps")};
}

tournament::AttentionKernel read_attention(const Napi::Object& o) {
  const std::string a = o.Get("attention").As<Napi::String>().Utf8Value();
  return a == "sdpa" ? tournament::AttentionKernel::kSdpa
         : a == "math" ? tournament::AttentionKernel::kMath
                       : tournament::AttentionKernel::kAuto;
}

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("parameters", &Model::Parameters),
                        InstanceMethod("loadWeights", &Model::LoadWeights),
                        InstanceMethod("forwardBackward", &Model::ForwardBackward)});
  }

  // new Model({ config, device, dtype, attention, seed })
  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    auto env = info.Env();
    auto o = info[0].As<Napi::Object>();
    const auto kernel = read_attention(o);
    guarded(env, [&] {
      const Qwen2Config cfg = read_config(o.Get("config").As<Napi::Object>());
      device_ = parse_device(o.Get("device").As<Napi::String>().Utf8Value());
      const auto dtype = parse_dtype(o.Get("dtype").As<Napi::String>().Utf8Value());
      model_ = Qwen2ForCausalLM(cfg, tournament::device_allocator(torch::TensorOptions().device(device_).dtype(dtype)),
                                kernel);
      tournament::init_weights(model_, static_cast<uint64_t>(i64(o, "seed")));
      return 0;
    });
  }

 private:
  // Refuses overlapping native calls on one model (the JS side awaits each).
  struct BusyGuard {
    explicit BusyGuard(Model* m, Napi::Env env) : m_(m) {
      if (m_->busy_.exchange(true)) throw Napi::Error::New(env, "model is busy with another operation");
    }
    ~BusyGuard() { if (m_) m_->busy_ = false; }
    void release() { m_ = nullptr; }
    Model* m_;
  };

  Napi::Value Parameters(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    auto params = model_->named_parameters();
    auto out = Napi::Array::New(env, params.size());
    size_t i = 0;
    for (auto& p : params) {
      auto o = Napi::Object::New(env);
      o.Set("name", p.key());
      o.Set("shape", shape_array(env, p.value().sizes()));
      o.Set("dtype", dtype_name(p.value().scalar_type()));
      out.Set(i++, o);
    }
    return out;
  }

  // loadWeights([{ name, file, offset, nbytes, dtype }]) -> Promise. The
  // TypeScript side has checked names, shapes, dtypes and file sizes.
  Napi::Value LoadWeights(const Napi::CallbackInfo& info);

  // forwardBackward({ ids: Int32Array, batch, seqLen, grads: string[] })
  //   -> { logits: Float32Array, logitsShape, loss, grads: { name: Float32Array } }
  // One forward and backward from the current weights, for correctness tests.
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    BusyGuard busy(this, env);
    auto o = info[0].As<Napi::Object>();
    const int64_t B = i64(o, "batch");
    const int64_t S = i64(o, "seqLen");
    auto ids = int32_tensor(o.Get("ids")).view({B, S}).to(device_);
    auto names = o.Get("grads").As<Napi::Array>();
    return guarded(env, [&]() -> Napi::Value {
      model_->zero_grad();
      auto logits = model_->forward(ids);                    // [B, S, V]
      auto loss = tournament::causal_lm_loss(logits, ids);  // scalar
      loss.backward();
      auto named = model_->named_parameters();
      auto grads = Napi::Object::New(env);
      for (uint32_t i = 0; i < names.Length(); ++i) {
        const std::string n = names.Get(i).As<Napi::String>().Utf8Value();
        auto* p = named.find(n);
        if (!p) throw std::runtime_error("no parameter named " + n);
        grads.Set(n, to_float32_array(env, p->grad()));
      }
      model_->zero_grad();
      auto out = Napi::Object::New(env);
      out.Set("logits", to_float32_array(env, logits));
      out.Set("logitsShape", shape_array(env, logits.sizes()));
      out.Set("loss", loss.item<double>());
      out.Set("grads", grads);
      return out;
    });
  }

  Qwen2ForCausalLM model_{nullptr};
  torch::Device device_{torch::kCPU};
  std::atomic<bool> busy_{false};
};

Napi::Value Model::LoadWeights(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto entries = guarded(env, [&] { return read_checkpoint_entries(info[0].As<Napi::Array>()); });
  return Task::Start(env, busy_, "model", [this, entries](const Task::Progress&) {
    torch::NoGradGuard no_grad;
    auto named = model_->named_parameters();
    for (const auto& e : entries) {
      auto* p = named.find(e.name);
      if (!p) throw UserInputError("checkpoint: the model has no parameter " + e.name);
      tournament::read_checkpoint_tensor(e, *p);
    }
  });
}

// ---------------------------------------------------------------- evaluator

class Evaluator : public Napi::ObjectWrap<Evaluator> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Evaluator",
                       {InstanceMethod("run", &Evaluator::Run), InstanceMethod("loadCheckpoint", &Evaluator::LoadCheckpoint),
                        InstanceMethod("keepLast", &Evaluator::KeepLast),
                        InstanceMethod("compareLastWith", &Evaluator::CompareLastWith),
                        InstanceMethod("release", &Evaluator::Release), InstanceMethod("close", &Evaluator::Close)});
  }

  // new Evaluator({ config, device, devices?: string[] (one per rank, rank 0's being `device`), dtype, attention,
  //   batchSize, seqLen, steps, warmupSteps, optimizer, probe: Int32Array, timeouts: { start, warmup, timed },
  //   checkpointPerturbation, recordTrajectory })
  explicit Evaluator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Evaluator>(info) {
    auto env = info.Env();
    auto o = info[0].As<Napi::Object>();
    tournament::EvalConfig c;
    c.attention = read_attention(o);
    c.batch_size = i64(o, "batchSize");
    c.seq_len = i64(o, "seqLen");
    c.steps = i64(o, "steps");
    c.warmup_steps = i64(o, "warmupSteps");
    c.optimizer = read_optimizer(o.Get("optimizer").As<Napi::Object>());
    auto t = o.Get("timeouts").As<Napi::Object>();
    c.start_timeout_s = num(t, "start");
    c.warmup_timeout_s = num(t, "warmup");
    c.timed_timeout_s = num(t, "timed");
    c.checkpoint_perturbation = num(o, "checkpointPerturbation");
    c.record_trajectory = o.Get("recordTrajectory").ToBoolean();
    c.record_layers = o.Get("recordLayers").ToBoolean();
    guarded(env, [&] {
      c.model = read_config(o.Get("config").As<Napi::Object>());
      c.device = parse_device(o.Get("device").As<Napi::String>().Utf8Value());
      // Several ranks (train_api.h): one device per rank.
      if (o.Has("devices") && o.Get("devices").IsArray()) {
        auto d = o.Get("devices").As<Napi::Array>();
        for (uint32_t i = 0; i < d.Length(); ++i) c.rank_devices.push_back(parse_device(d.Get(i).As<Napi::String>().Utf8Value()));
      }
      c.dtype = parse_dtype(o.Get("dtype").As<Napi::String>().Utf8Value());
      c.probe = int32_tensor(o.Get("probe")).view({-1, c.seq_len});
      ev_ = std::make_unique<tournament::Evaluator>(std::move(c));
      return 0;
    });
  }

  std::unique_ptr<tournament::Evaluator> ev_;
  std::atomic<bool> busy_{false};

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value CompareLastWith(const Napi::CallbackInfo& info);
  Napi::Value LoadCheckpoint(const Napi::CallbackInfo& info);
  Napi::Value KeepLast(const Napi::CallbackInfo& info) {
    open(info.Env());
    return guarded(info.Env(), [&] { return Napi::Number::New(info.Env(), static_cast<double>(ev_->keep_last())); });
  }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    open(info.Env());
    ev_->release(info[0].As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }
  // Frees the shared memory now (GBs on the device) rather than whenever the
  // garbage collector gets to this object.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), "evaluator: close() while a call is running");
    ev_.reset();
    return info.Env().Undefined();
  }

 public:
  void open(Napi::Env env) const {
    if (!ev_) throw Napi::Error::New(env, "evaluator: already closed");
  }
};

Napi::Promise queue_eval(Napi::Env env, Evaluator* e, Task::Work work, Task::Finish finish,
                         Napi::Function cb = Napi::Function()) {
  e->open(env);
  return Task::Start(env, e->busy_, "evaluator", std::move(work), std::move(finish), cb);
}

// loadCheckpoint([{ name, file, offset, nbytes, dtype }]) -> Promise: every
// later run starts from it (src/engine/safetensors.ts has checked the plan).
Napi::Value Evaluator::LoadCheckpoint(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto entries = guarded(env, [&] { return read_checkpoint_entries(info[0].As<Napi::Array>()); });
  auto* ev = ev_.get();
  return queue_eval(env, this, [ev, entries](const Task::Progress&) { ev->load_checkpoint(entries); }, nullptr);
}

// run({ argv: string[], seed, warmupSeed, seqLen, warmupTokens: Int32Array, timedTokens: Int32Array,
//       logPath, reference }, onProgress) -> Promise<outcome>. argv: the sandbox command that
//   runs tournament-runner on the plugin, with bwrap's --info-fd runnerInfoFd so the sandbox's PID 1 can be killed.
Napi::Value Evaluator::Run(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = info[0].As<Napi::Object>();
  auto in = std::make_shared<tournament::RunInputs>();
  auto out = std::make_shared<tournament::RunOutcome>();
  auto argv = o.Get("argv").As<Napi::Array>();
  for (uint32_t i = 0; i < argv.Length(); ++i) in->argv.push_back(argv.Get(i).As<Napi::String>());
  in->seed = static_cast<uint64_t>(i64(o, "seed"));
  in->warmup_seed = static_cast<uint64_t>(i64(o, "warmupSeed"));
  in->log_path = o.Get("logPath").As<Napi::String>();
  in->reference = o.Get("reference").ToBoolean();
  in->warmup_tokens = int32_tensor(o.Get("warmupTokens"));
  in->timed_tokens = int32_tensor(o.Get("timedTokens"));
  const int64_t seq = i64(o, "seqLen");
  in->warmup_tokens = in->warmup_tokens.view({-1, seq});
  in->timed_tokens = in->timed_tokens.view({-1, seq});
  Napi::Function cb = info.Length() > 1 && info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function();
  auto* ev = ev_.get();
  return queue_eval(
      env, this, [ev, in, out](const Task::Progress& p) { *out = ev->run(*in, p); },
      [ev, out](Napi::Env env) -> Napi::Value {
        auto r = Napi::Object::New(env);
        r.Set("completed", out->completed);
        r.Set("failureCode", out->failure_code);
        r.Set("failureMessage", out->failure_message);
        r.Set("seconds", out->seconds);
        r.Set("overheadSeconds", out->overhead_seconds);
        r.Set("reportedTokens", static_cast<double>(out->reported_tokens));
        r.Set("reportedLoss", out->reported_loss);
        r.Set("reportedPeakMemory", static_cast<double>(out->reported_peak_memory));
        r.Set("probeLoss", out->probe_loss);
        r.Set("initialProbeLoss", out->initial_probe_loss);
        r.Set("checkpointSeconds", ev->has_checkpoint() ? Napi::Value(Napi::Number::New(env, out->checkpoint_seconds))
                                                        : env.Null());
        auto cells = Napi::Array::New(env, out->cell_losses.size());
        for (size_t i = 0; i < out->cell_losses.size(); ++i) cells.Set(i, out->cell_losses[i]);
        r.Set("cellLosses", cells);
        auto trajectory = Napi::Array::New(env, out->trajectory.size());
        for (size_t t = 0; t < out->trajectory.size(); ++t) {
          auto o = Napi::Object::New(env);
          o.Set("recorded", out->trajectory[t].recorded);
          o.Set("outOfReach", static_cast<double>(out->trajectory[t].out_of_reach));
          auto kinds = Napi::Object::New(env);
          for (const auto& [kind, e] : out->trajectory[t].kinds) kinds.Set(kind, e);
          o.Set("kinds", kinds);
          o.Set("headInputError", out->trajectory[t].head_input_error);
          o.Set("headGradError", out->trajectory[t].head_grad_error);
          o.Set("headRowsMissing", static_cast<double>(out->trajectory[t].head_rows_missing));
          if (!out->trajectory[t].record_kinds.empty() || out->trajectory[t].layer_rows_missing > 0) {
            o.Set("layerForwardError", out->trajectory[t].layer_forward_error);
            o.Set("layerBackwardError", out->trajectory[t].layer_backward_error);
            o.Set("layerSmallTerms", out->trajectory[t].layer_small_terms);
            o.Set("layerSmallEnergy", out->trajectory[t].layer_small_energy);
            o.Set("mlpGradSmallTerms", out->trajectory[t].mlp_grad_small_terms);
            o.Set("layerRowsMissing", static_cast<double>(out->trajectory[t].layer_rows_missing));
            auto record = Napi::Object::New(env);
            for (const auto& [kind, e] : out->trajectory[t].record_kinds) record.Set(kind, e);
            o.Set("recordKinds", record);
          }
          trajectory.Set(static_cast<uint32_t>(t), o);
        }
        r.Set("trajectory", trajectory);
        auto phases = Napi::Object::New(env);
        for (const auto& [name, s] : out->phase_seconds) phases.Set(name, s);
        r.Set("phaseSeconds", phases);
        return r;
      },
      cb);
}

// compareLastWith(keptId, seed) -> Promise<comparison>
Napi::Value Evaluator::CompareLastWith(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const int64_t id = info[0].As<Napi::Number>().Int64Value();
  const uint64_t seed = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  auto c = std::make_shared<tournament::Comparison>();
  auto* ev = ev_.get();
  return queue_eval(
      env, this, [ev, id, seed, c](const Task::Progress&) { *c = ev->compare_last_with(id, seed); },
      [c](Napi::Env env) -> Napi::Value {
        auto r = Napi::Object::New(env);
        r.Set("logitsRelError", c->logits_rel_error);
        r.Set("updateRelError", c->update_rel_error);
        r.Set("maxTensorRelError", c->max_tensor_rel_error);
        auto kinds = Napi::Object::New(env);
        for (const auto& [kind, e] : c->kind_rel_errors) kinds.Set(kind, e);
        r.Set("kindRelErrors", kinds);
        auto groups = Napi::Object::New(env);
        for (const auto& g : c->group_shifts) {
          auto o = Napi::Object::New(env);
          o.Set("lastBatch", g.last_batch);
          o.Set("probe", g.probe);
          groups.Set(g.group, o);
        }
        r.Set("groupShifts", groups);
        auto head = Napi::Array::New(env, c->head_alignment.size());
        for (size_t t = 0; t < c->head_alignment.size(); ++t) head.Set(static_cast<uint32_t>(t), c->head_alignment[t]);
        r.Set("headAlignment", head);
        auto excess = Napi::Array::New(env, c->head_position_excess.size());
        for (size_t t = 0; t < c->head_position_excess.size(); ++t) excess.Set(static_cast<uint32_t>(t), c->head_position_excess[t]);
        r.Set("headPositionExcess", excess);
        auto layers = Napi::Array::New(env, c->layer_positions.size());
        for (size_t t = 0; t < c->layer_positions.size(); ++t) {
          auto o = Napi::Object::New(env);
          o.Set("kind", c->layer_positions[t].kind);
          o.Set("excess", c->layer_positions[t].excess);
          layers.Set(static_cast<uint32_t>(t), o);
        }
        r.Set("layerPositions", layers);
        auto energy = Napi::Array::New(env, c->layer_pair_energy.size());
        for (size_t t = 0; t < c->layer_pair_energy.size(); ++t) {
          auto o = Napi::Object::New(env);
          for (const auto& [kind, e] : c->layer_pair_energy[t]) o.Set(kind, e);
          energy.Set(static_cast<uint32_t>(t), o);
        }
        r.Set("layerPairEnergy", energy);
        auto pair_excess = Napi::Object::New(env);
        for (const auto& [kind, e] : c->layer_pair_excess) pair_excess.Set(kind, e);
        r.Set("layerPairExcess", pair_excess);
        auto head_energy = Napi::Array::New(env, c->head_pair_energy.size());
        for (size_t t = 0; t < c->head_pair_energy.size(); ++t) head_energy.Set(static_cast<uint32_t>(t), c->head_pair_energy[t]);
        r.Set("headPairEnergy", head_energy);
        r.Set("changedShare", c->changed_share);
        r.Set("referenceChangedShare", c->reference_changed_share);
        r.Set("changedAfterKill", c->changed_after_kill);
        auto frozen = Napi::Array::New(env, c->frozen.size());
        for (size_t i = 0; i < c->frozen.size(); ++i) frozen.Set(i, c->frozen[i]);
        r.Set("frozen", frozen);
        auto phases = Napi::Object::New(env);
        for (const auto& [part, seconds] : c->phase_seconds) phases.Set(part, seconds);
        r.Set("phaseSeconds", phases);
        return r;
      });
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  o.Set("cudaAvailable", torch::cuda::is_available());
  o.Set("cudaDeviceCount", static_cast<double>(torch::cuda::device_count()));
  o.Set("sdpa", tournament::compat::kHasSdpa);
  return o;
}

Napi::Value NumParameters(const Napi::CallbackInfo& info) {
  const Qwen2Config cfg = guarded(info.Env(), [&] { return read_config(info[0].As<Napi::Object>()); });
  return Napi::Number::New(info.Env(), static_cast<double>(cfg.num_parameters()));
}

// parameterSpecs(config) -> [{ name, shape }]: the model's parameters in order, without building it.
Napi::Value ParameterSpecs(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const auto specs = guarded(env, [&] { return tournament::parameter_specs(read_config(info[0].As<Napi::Object>())); });
  auto out = Napi::Array::New(env, specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", specs[i].name);
    o.Set("shape", shape_array(env, specs[i].shape));
    out.Set(i, o);
  }
  return out;
}

// testing.nativeError(kind): throws as the engine would, for the error-path tests:
// 'user' a UserInputError, 'bug' a c10::Error, 'alloc' std::bad_alloc; async when `async`.
Napi::Value NativeError(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  const std::string kind = info[0].As<Napi::String>();
  auto fail = [kind] {
    if (kind == "user") throw UserInputError("the input is wrong");
    if (kind == "alloc") throw std::bad_alloc();
    TORCH_CHECK(false, "an engine invariant broke");
  };
  if (!info[1].ToBoolean().Value()) {
    guarded(env, [&] { fail(); return 0; });
    return env.Undefined();
  }
  static std::atomic<bool> busy{false};
  return Task::Start(env, busy, "nativeError", [fail](const Task::Progress&) { fail(); });
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  // The in-process model: only tests (checked against transformers) and checkpoint checks use it; the
  // harness never runs a model in this process beyond its own measurements.
  auto testing = Napi::Object::New(env);
  testing.Set("Model", Model::Init(env));
  testing.Set("nativeError", Napi::Function::New(env, NativeError));
  exports.Set("testing", testing);
  exports.Set("Evaluator", Evaluator::Init(env));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("numParameters", Napi::Function::New(env, NumParameters));
  exports.Set("parameterSpecs", Napi::Function::New(env, ParameterSpecs));
  // The runner's start-up contract is protocol.h's: the sandbox command must name this fd in --info-fd.
  exports.Set("runnerInfoFd", Napi::Number::New(env, tournament::protocol::kInfoFd));
  return exports;
}

}  // namespace

NODE_API_MODULE(tournament, InitAll)
