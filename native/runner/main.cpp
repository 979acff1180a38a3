// tournament-runner: the untrusted side. One fresh process per run, inside
// the sandbox. It maps the memory the trusted process owns, loads the
// submission's plugin, runs warmup when told, runs the timed call at GO,
// writes the logits into the trusted buffer and says DONE. It is killed at
// DONE; nothing it does afterwards counts.
//
//   tournament-runner PLUGIN.so              (fds 3..6 as protocol.h says)
//   tournament-runner --ranks G PLUGIN.so    (several ranks: starts one runner per rank)
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "../src/batches.h"
#include "../src/compat.h"
#include "../src/distributed.h"
#include "../src/protocol.h"

using namespace tournament;
namespace proto = tournament::protocol;

namespace {

Distributed g_distributed;  // what distributed() hands the plugin
c10::intrusive_ptr<c10d::ProcessGroup> g_group;  // owns g_distributed.group

using VersionFn = int (*)();
using CallFn = void (*)(Qwen2ForCausalLM*, DataIterator*, int64_t, const torch::Device*, const OptimizerConfig*,
                        TrainResult*);

[[noreturn]] void fail(proto::ErrorKind kind, const std::string& text) {
  proto::Error e{};
  e.kind = static_cast<uint32_t>(kind);
  std::snprintf(e.text, sizeof e.text, "%s", text.c_str());
  proto::send_msg(proto::kControlFd, proto::Type::kError, &e);
  std::_Exit(3);
}

proto::Packet expect(proto::Type type) {
  proto::Packet p;
  bool eof = false;
  if (!proto::recv_msg(proto::kControlFd, -1, &p, &eof) || p.type != type) std::_Exit(4);
  return p;
}

bool is_oom(const std::string& msg) {
  return msg.find("out of memory") != std::string::npos || msg.find("std::bad_alloc") != std::string::npos ||
         msg.find("DefaultCPUAllocator: can't allocate") != std::string::npos;
}

TrainResult call(CallFn fn, Qwen2ForCausalLM& model, DataIterator& data, int64_t steps, const torch::Device& device,
                 const OptimizerConfig& opt) {
  TrainResult out;
  // Every call starts without gradients: none left over from warmup leak into the timed run.
  model->zero_grad(/*set_to_none=*/true);
  try {
    fn(&model, &data, steps, &device, &opt, &out);
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    fail(is_oom(m) ? proto::ErrorKind::kOutOfMemory : proto::ErrorKind::kException, m);
  } catch (const std::bad_alloc&) {
    fail(proto::ErrorKind::kOutOfMemory, "std::bad_alloc");
  } catch (const std::exception& e) {
    fail(is_oom(e.what()) ? proto::ErrorKind::kOutOfMemory : proto::ErrorKind::kException, e.what());
  } catch (...) {
    fail(proto::ErrorKind::kException, "an exception that is not a std::exception");
  }
  return out;
}

// The sandbox's first process when there are several ranks (protocol.h):
// starts one runner per rank, each with its own descriptors moved to the
// one-rank numbers, and exits as soon as any of them ends, which ends the
// sandbox and so every other rank (a rank that died leaves the others waiting
// on it in a collective). Loads no plugin: the ranks do, after exec.
int launch_ranks(int ranks, const char* self, const char* plugin) {
  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      return 5;
    }
    if (pid == 0) {
      if (r > 0 && (::dup2(proto::rank_fd(r, proto::RankFd::kControl), proto::kControlFd) < 0 ||
                    ::dup2(proto::rank_fd(r, proto::RankFd::kParams), proto::kParamsFd) < 0 ||
                    ::dup2(proto::rank_fd(r, proto::RankFd::kLogits), proto::kLogitsFd) < 0)) {
        std::_Exit(5);
      }
      // Nothing of another rank's (nor bwrap's info pipe) stays open in this
      // one; the trajectory is every rank's (each records its own rows of the
      // loss head's record; rank 0 the parameters too).
      for (int fd = proto::kInfoFd; fd < proto::rank_fd(ranks, proto::RankFd::kControl); ++fd) {
        if (fd != proto::kTrajectoryFd) ::close(fd);
      }
      char* args[] = {const_cast<char*>(self), const_cast<char*>(plugin), nullptr};
      ::execv(self, args);
      std::_Exit(5);
    }
  }
  // Only the ranks hold their control channels: when one dies, the trusted side sees it end.
  for (int fd = proto::kControlFd; fd < proto::rank_fd(ranks, proto::RankFd::kControl); ++fd) {
    if (fd != 1 && fd != 2) ::close(fd);
  }
  int status = 0;
  while (::wait(&status) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

// The plugin's view of its rank (train_api.h); the runner exports it.
const Distributed& tournament::distributed() { return g_distributed; }

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--ranks") == 0) {
    const int ranks = std::atoi(argv[2]);
    if (ranks < 2 || ranks > proto::kMaxRanks) {
      std::fprintf(stderr, "tournament-runner: --ranks must be 2 to %d\n", proto::kMaxRanks);
      return 2;
    }
    return launch_ranks(ranks, argv[0], argv[3]);
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: tournament-runner [--ranks G] PLUGIN.so (started by the trusted side, not by hand)\n");
    return 2;
  }
  const auto init = expect(proto::Type::kInit).body.init;
  const Qwen2Config& cfg = init.model;
  const torch::Device device(static_cast<c10::DeviceType>(init.device_type),
                             static_cast<c10::DeviceIndex>(init.device_index));
  const auto dtype = static_cast<torch::Dtype>(init.dtype);
  const OptimizerConfig& opt = init.optimizer;
  if (init.world_size < 1 || init.world_size > proto::kMaxRanks || init.rank < 0 || init.rank >= init.world_size ||
      init.batch_size % init.world_size != 0) {
    fail(proto::ErrorKind::kException, "INIT names no valid rank");
  }
  compat::cuda_set_device(device);  // the rank's device is the current one: its current stream is the one waited for

  // The trusted side's memory, mapped here.
  const auto layout = proto::param_layout(cfg, dtype);
  SharedRegion params, data, logits, trajectory;
  Qwen2ForCausalLM model{nullptr};
  try {
    params = SharedRegion::map(proto::kParamsFd, init.params_bytes, device);
    data = SharedRegion::map(proto::kDataFd, init.data_bytes, torch::kCPU);
    logits = SharedRegion::map(proto::kLogitsFd, init.logits_bytes, device);
    if (init.trajectory_bytes > 0) {
      if (init.steps < 2 || init.trajectory_bytes != proto::trajectory_region_bytes(cfg, init.params_bytes, init.batch_size,
                                                                                    init.seq_len, init.steps,
                                                                                    init.record_layers != 0)) {
        fail(proto::ErrorKind::kException, "INIT names a trajectory that does not fit the parameters");
      }
      trajectory = SharedRegion::map(proto::kTrajectoryFd, init.trajectory_bytes, torch::kCPU);
      // Page-locked, the copies from the card run at PCIe speed, beside its
      // work: the part this rank writes (rank 0 the parameters' slots too).
      const size_t skip = init.rank == 0 ? 0 : (init.steps - 1) * init.params_bytes;
      if (device.is_cuda() &&
          !compat::pin_host(static_cast<char*>(trajectory.view(0, {1}, torch::kUInt8).data_ptr()) + skip,
                            trajectory.size() - skip, device)) {
        std::fprintf(stderr, "tournament-runner: could not page-lock the trajectory; its copies will be slow\n");
      }
    }
    model = Qwen2ForCausalLM(cfg, proto::region_allocator(params, layout, dtype),
                             static_cast<AttentionKernel>(init.attention));
    model->train();
  } catch (const std::exception& e) {
    fail(proto::ErrorKind::kException, std::string("mapping shared memory: ") + e.what());
  }
  // The ranks meet before any plugin code runs, in the sandbox's private /tmp (fresh for this run).
  g_distributed.rank = init.rank;
  g_distributed.world_size = init.world_size;
  if (init.world_size > 1) {
    try {
      g_group = make_process_group(device, init.rank, init.world_size, "/tmp/tournament-rendezvous",
                                   std::chrono::milliseconds(init.rendezvous_timeout_ms));
      g_distributed.group = g_group.get();
    } catch (const std::exception& e) {
      fail(proto::ErrorKind::kException, std::string("the ranks' process group: ") + e.what());
    }
  }

  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) fail(proto::ErrorKind::kPluginLoad, dlerror());
  auto version = reinterpret_cast<VersionFn>(dlsym(lib, "tournament_train_api_version"));
  auto fn = reinterpret_cast<CallFn>(dlsym(lib, "tournament_call_inner_steps"));
  if (!version || !fn) fail(proto::ErrorKind::kApiVersion, "the plugin does not export the train API entry points");
  if (version() != TOURNAMENT_TRAIN_API_VERSION) {
    fail(proto::ErrorKind::kApiVersion, "built against train API version " + std::to_string(version()) +
                                            ", this runner speaks " + std::to_string(TOURNAMENT_TRAIN_API_VERSION));
  }
  proto::send_msg(proto::kControlFd, proto::Type::kReady);

  const int64_t B = init.batch_size, S = init.seq_len;
  auto tokens = data.view(0, {static_cast<int64_t>(init.data_bytes / sizeof(int64_t) / S), S}, torch::kInt64);

  proto::Packet p;
  bool eof = false;
  if (!proto::recv_msg(proto::kControlFd, -1, &p, &eof)) return 4;
  if (p.type == proto::Type::kWarmup) {
    TableBatches warm(tokens, p.body.warmup.steps, B, device, init.rank, init.world_size);
    call(fn, model, warm, p.body.warmup.steps, device, opt);
    compat::cuda_synchronize(device);
    proto::send_msg(proto::kControlFd, proto::Type::kWarm);
    if (!proto::recv_msg(proto::kControlFd, -1, &p, &eof)) return 4;
  }
  if (p.type != proto::Type::kGo) return 4;

  compat::cuda_reset_peak(device);  // the timed call's peak, not warmup's
  TableBatches batches(tokens, init.steps, B, device, init.rank, init.world_size);
  if (init.trajectory_bytes > 0) {
    const auto n = static_cast<int64_t>(init.params_bytes);
    // The ranks' parameters agree byte for byte after every step: rank 0's are recorded.
    if (init.rank == 0) {
      batches.record_into(params.view(0, {n}, torch::kUInt8), trajectory.view(0, {init.steps - 1, n}, torch::kUInt8));
    }
    const size_t heads_at = (init.steps - 1) * init.params_bytes;
    const auto heads = trajectory.view(heads_at, proto::head_record_shape(cfg, B, S, init.steps), torch::kBFloat16);
    const auto layers = init.record_layers == 0 ? torch::Tensor()
                                          : trajectory.view(heads_at + proto::head_record_bytes(cfg, B, S, init.steps),
                                                            proto::layer_record_shape(cfg, B, S, init.steps),
                                                            torch::kBFloat16);
    batches.record_heads_into(heads[0], heads[1], layers);
    set_head_recorder(&batches);  // model->hidden_states records there (train_api.h, versions 5 and 6)
  }
  TrainResult out = call(fn, model, batches, init.steps, device, opt);
  batches.settle();

  proto::Done done{};
  done.total_tokens = out.total_tokens;
  done.final_loss = out.final_loss;
  if (!out.logits.defined() || out.logits.dim() != 3) {
    fail(proto::ErrorKind::kLogits, "inner_steps returned no [batch, seq_len - 1, vocab] logits");
  }
  const std::vector<int64_t> want{B / init.world_size, S - 1, cfg.vocab_size};  // this rank's rows
  if (out.logits.sizes().vec() != want) {
    fail(proto::ErrorKind::kLogits, "inner_steps returned logits of shape " + c10::str(out.logits.sizes()) +
                                        ", expected " + c10::str(at::IntArrayRef(want)));
  }
  try {
    logits.view(0, want, dtype).copy_(out.logits.detach());
  } catch (const std::exception& e) {
    fail(proto::ErrorKind::kLogits, std::string("copying the logits: ") + e.what());
  }
  // Every stream of the device, not only the one the logits were copied on:
  // work the plugin left queued elsewhere (the last step on a stream of its
  // own) finishes on the clock. A kernel still running when the trusted side
  // kills this process may finish during the teardown, after the clock and
  // before the hash; so nothing the plugin queued before returning is left
  // running at DONE (a review of the CUDA record path, session 41).
  compat::cuda_synchronize(device);
  done.peak_memory_bytes = compat::cuda_peak_allocated(device);
  if (done.peak_memory_bytes < 0) {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    done.peak_memory_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  }
  proto::send_msg(proto::kControlFd, proto::Type::kDone, &done);
  // The trusted side kills this process now; wait for it.
  for (;;) pause();
}
