// The Node binding: thin. All validation happens in TypeScript (src/engine/);
// here options are read, work runs off the JS thread, and native errors come
// back as plain messages.
#include <napi.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>

#include "../src/bench.h"
#include "../src/compat.h"

// The in-process baseline (issue 2): local_test/train.cpp compiled into the
// addon. Only the official baseline is ever linked here; submissions run in
// the sandboxed runner.
extern "C" void tournament_call_inner_steps(tournament::Qwen2ForCausalLM*, tournament::DataIterator*, int64_t,
                                            const torch::Device*, const tournament::OptimizerConfig*,
                                            tournament::TrainResult*);

namespace {

using tournament::Qwen2Config;
using tournament::Qwen2ForCausalLM;

std::string native_message(const std::exception& e) {
  if (auto* c10e = dynamic_cast<const c10::Error*>(&e)) return c10e->what_without_backtrace();
  return e.what();
}

// Runs `fn`, turning any C++ exception into a JS Error with its message.
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, native_message(e));
  }
}

torch::Dtype parse_dtype(const std::string& s) {
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float32") return torch::kFloat32;
  if (s == "float16") return torch::kFloat16;
  throw std::runtime_error("unknown dtype " + s);
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

// The Hugging Face config fields the engine uses (validated in TypeScript).
Qwen2Config read_config(const Napi::Object& c) {
  auto i64 = [&](const char* k) { return c.Get(k).As<Napi::Number>().Int64Value(); };
  Qwen2Config cfg;
  cfg.vocab_size = i64("vocab_size");
  cfg.hidden_size = i64("hidden_size");
  cfg.intermediate_size = i64("intermediate_size");
  cfg.num_hidden_layers = i64("num_hidden_layers");
  cfg.num_attention_heads = i64("num_attention_heads");
  cfg.num_key_value_heads = i64("num_key_value_heads");
  cfg.max_position_embeddings = i64("max_position_embeddings");
  cfg.rope_theta = c.Get("rope_theta").As<Napi::Number>().DoubleValue();
  cfg.rms_norm_eps = c.Get("rms_norm_eps").As<Napi::Number>().DoubleValue();
  cfg.tie_word_embeddings = c.Get("tie_word_embeddings").As<Napi::Boolean>().Value();
  return cfg;
}

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Model",
                       {InstanceMethod("parameters", &Model::Parameters),
                        InstanceMethod("loadWeights", &Model::LoadWeights),
                        InstanceMethod("forwardBackward", &Model::ForwardBackward),
                        InstanceMethod("benchmark", &Model::Benchmark)});
  }

  // new Model({ config, device, dtype, attention, seed })
  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    auto env = info.Env();
    auto o = info[0].As<Napi::Object>();
    const Qwen2Config cfg = read_config(o.Get("config").As<Napi::Object>());
    const std::string attention = o.Get("attention").As<Napi::String>().Utf8Value();
    const auto kernel = attention == "sdpa"   ? tournament::AttentionKernel::kSdpa
                        : attention == "math" ? tournament::AttentionKernel::kMath
                                              : tournament::AttentionKernel::kAuto;
    guarded(env, [&] {
      device_ = torch::Device(o.Get("device").As<Napi::String>().Utf8Value());
      dtype_ = parse_dtype(o.Get("dtype").As<Napi::String>().Utf8Value());
      model_ = Qwen2ForCausalLM(cfg, tournament::device_allocator(torch::TensorOptions().device(device_).dtype(dtype_)),
                                kernel);
      tournament::init_weights(model_, static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value()));
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
    const int64_t B = o.Get("batch").As<Napi::Number>().Int64Value();
    const int64_t S = o.Get("seqLen").As<Napi::Number>().Int64Value();
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

  // benchmark({ tokens: Int32Array, samples, seqLen, batchSize, steps,
  //             warmupSteps, seed, optimizer }, onProgress(phase, done, total)) -> Promise<result>
  Napi::Value Benchmark(const Napi::CallbackInfo& info);

  friend class LoadWorker;
  friend class BenchWorker;
  Qwen2ForCausalLM model_{nullptr};
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kBFloat16;
  std::atomic<bool> busy_{false};
};

struct WeightEntry {
  std::string name, file, dtype;
  int64_t offset, nbytes;
};

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, Model* m, std::vector<WeightEntry> entries)
      : Napi::AsyncWorker(env), m_(m), entries_(std::move(entries)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      torch::NoGradGuard no_grad;
      auto named = m_->model_->named_parameters();
      for (auto& e : entries_) {
        auto* p = named.find(e.name);
        if (!p) throw std::runtime_error("no parameter named " + e.name);
        const auto src_dtype = parse_dtype(e.dtype);
        auto host = torch::empty(p->sizes(), torch::TensorOptions().dtype(src_dtype));
        if (host.nbytes() != static_cast<size_t>(e.nbytes)) {
          throw std::runtime_error(e.file + ": tensor " + e.name + " holds " + std::to_string(e.nbytes) +
                                   " bytes, the model expects " + std::to_string(host.nbytes()));
        }
        read_range(e, static_cast<char*>(host.data_ptr()));
        p->copy_(host);
      }
    } catch (const std::exception& ex) {
      SetError(native_message(ex));
    }
  }
  void OnOK() override { m_->busy_ = false; deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& err) override { m_->busy_ = false; deferred_.Reject(err.Value()); }

 private:
  static void read_range(const WeightEntry& e, char* dst) {
    int fd = ::open(e.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(e.file + ": cannot open: " + std::strerror(errno));
    int64_t done = 0;
    while (done < e.nbytes) {
      ssize_t n = ::pread(fd, dst + done, static_cast<size_t>(e.nbytes - done), e.offset + done);
      if (n <= 0) {
        ::close(fd);
        throw std::runtime_error(e.file + ": truncated while reading tensor " + e.name);
      }
      done += n;
    }
    ::close(fd);
  }

  Model* m_;
  std::vector<WeightEntry> entries_;
  Napi::Promise::Deferred deferred_;
};

Napi::Value Model::LoadWeights(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  BusyGuard busy(this, env);
  auto arr = info[0].As<Napi::Array>();
  std::vector<WeightEntry> entries;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto o = arr.Get(i).As<Napi::Object>();
    entries.push_back({o.Get("name").As<Napi::String>(), o.Get("file").As<Napi::String>(),
                       o.Get("dtype").As<Napi::String>(), o.Get("offset").As<Napi::Number>().Int64Value(),
                       o.Get("nbytes").As<Napi::Number>().Int64Value()});
  }
  auto* w = new LoadWorker(env, this, std::move(entries));
  auto promise = w->Promise();
  w->Queue();
  busy.release();  // the worker clears it when done
  return promise;
}

struct Progress {
  std::string phase;
  int64_t done, total;
};

class BenchWorker : public Napi::AsyncProgressQueueWorker<Progress> {
 public:
  BenchWorker(Napi::Env env, Model* m, tournament::BenchOptions opts, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<Progress>(env), m_(m), opts_(std::move(opts)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (!on_progress.IsEmpty()) progress_cb_ = Napi::Persistent(on_progress);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    try {
      opts_.progress = [&](const std::string& phase, int64_t done, int64_t total) {
        Progress p{phase, done, total};
        progress.Send(&p, 1);
      };
      result_ = tournament::run_benchmark(m_->model_, &tournament_call_inner_steps, opts_);
    } catch (const std::exception& ex) {
      SetError(native_message(ex));
    }
  }

  void OnProgress(const Progress* p, size_t n) override {
    if (progress_cb_.IsEmpty()) return;
    Napi::HandleScope scope(Env());
    for (size_t i = 0; i < n; ++i) {
      progress_cb_.Call({Napi::String::New(Env(), p[i].phase), Napi::Number::New(Env(), p[i].done),
                         Napi::Number::New(Env(), p[i].total)});
    }
  }

  void OnOK() override {
    m_->busy_ = false;
    auto env = Env();
    auto o = Napi::Object::New(env);
    o.Set("warmupSeconds", result_.warmup_seconds);
    o.Set("timedSeconds", result_.timed_seconds);
    o.Set("steps", result_.steps);
    o.Set("tokens", result_.tokens);
    o.Set("reportedTokens", result_.reported_tokens);
    o.Set("finalLoss", result_.final_loss);
    o.Set("peakDeviceBytes", static_cast<double>(result_.peak_device_bytes));
    o.Set("logitsShape", shape_array(env, result_.logits_shape));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& err) override { m_->busy_ = false; deferred_.Reject(err.Value()); }

 private:
  Model* m_;
  tournament::BenchOptions opts_;
  tournament::BenchResult result_;
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference progress_cb_;
};

Napi::Value Model::Benchmark(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  BusyGuard busy(this, env);
  auto o = info[0].As<Napi::Object>();
  tournament::BenchOptions opts;
  const int64_t samples = o.Get("samples").As<Napi::Number>().Int64Value();
  const int64_t seq_len = o.Get("seqLen").As<Napi::Number>().Int64Value();
  opts.tokens = int32_tensor(o.Get("tokens")).view({samples, seq_len});
  opts.batch_size = o.Get("batchSize").As<Napi::Number>().Int64Value();
  opts.steps = o.Get("steps").As<Napi::Number>().Int64Value();
  opts.warmup_steps = o.Get("warmupSteps").As<Napi::Number>().Int64Value();
  opts.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
  auto opt = o.Get("optimizer").As<Napi::Object>();
  opts.optimizer.lr = opt.Get("lr").As<Napi::Number>().DoubleValue();
  opts.optimizer.weight_decay = opt.Get("weight_decay").As<Napi::Number>().DoubleValue();
  opts.optimizer.beta1 = opt.Get("beta1").As<Napi::Number>().DoubleValue();
  opts.optimizer.beta2 = opt.Get("beta2").As<Napi::Number>().DoubleValue();
  opts.optimizer.eps = opt.Get("eps").As<Napi::Number>().DoubleValue();
  Napi::Function cb = info.Length() > 1 && info[1].IsFunction() ? info[1].As<Napi::Function>() : Napi::Function();
  auto* w = new BenchWorker(env, this, std::move(opts), cb);
  auto promise = w->Promise();
  w->Queue();
  busy.release();
  return promise;
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
  const Qwen2Config cfg = read_config(info[0].As<Napi::Object>());
  return Napi::Number::New(info.Env(), static_cast<double>(cfg.num_parameters()));
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", Model::Init(env));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("numParameters", Napi::Function::New(env, NumParameters));
  return exports;
}

}  // namespace

NODE_API_MODULE(tournament, InitAll)
