#include "evaluator.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include "compat.h"
#include "fingerprint.h"

namespace tournament {

namespace proto = protocol;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The mean of a run of cell losses, each cell weighing alike (the run and its hybrids are measured the same way).
double mean(std::vector<double>::const_iterator begin, std::vector<double>::const_iterator end) {
  return std::accumulate(begin, end, 0.0) / static_cast<double>(end - begin);
}

// Runner text is hostile: keep printable ASCII, at most 300 characters.
std::string sanitize(const char* text, size_t cap) {
  std::string out;
  for (size_t i = 0; i < cap && text[i] && out.size() < 300; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    out.push_back(c >= 32 && c < 127 ? static_cast<char>(c) : ' ');
  }
  return out;
}

// The runner's last output, for a failed run's message: hostile text, so
// sanitised and short (information for the miner, never parsed). Read through
// the trusted side's own descriptor of the file it created: the runner can
// rename, replace or relink the name in its scratch folder (a symlink to a
// host secret, a FIFO that blocks an open), never this inode.
std::string log_tail(int fd) {
  if (fd < 0) return "";
  char buf[400];
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const off_t from = std::max<off_t>(0, size - static_cast<off_t>(sizeof buf - 1));
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, from);
  if (n <= 0) return "";
  buf[n] = 0;
  std::string t = sanitize(buf, static_cast<size_t>(n));
  const auto first = t.find_first_not_of(' '), last = t.find_last_not_of(' ');
  return first == std::string::npos ? "" : t.substr(first, last - first + 1);
}

// Reads bwrap's {"child-pid": N} from the info pipe (trusted binary, but read
// defensively: digits after "child-pid").
pid_t read_child_pid(int fd, int timeout_ms) {
  std::string buf;
  auto start = Clock::now();
  while (buf.find('}') == std::string::npos && since(start) * 1000 < timeout_ms && buf.size() < 4096) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char tmp[256];
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  auto k = buf.find("child-pid");
  if (k == std::string::npos) return -1;
  k = buf.find_first_of("0123456789", k);
  if (k == std::string::npos) return -1;
  return static_cast<pid_t>(std::strtol(buf.c_str() + k, nullptr, 10));
}

// A spawned sandbox: the bwrap process (our child) and the sandbox's PID-1
// (from bwrap's --info-fd). Killing PID-1 of a PID namespace kills every
// process in it, and bwrap's own exit (which we wait for) follows that
// namespace's end, so once kill_and_reap() returns nothing of the runner can
// touch the shared memory any more.
struct Sandbox {
  pid_t bwrap = -1;
  pid_t inner = -1;
  std::vector<int> controls;  // one control channel per rank
  int log = -1;  // the runner's stdout and stderr, as created here
  int status = 0;
  bool reaped = false;

  // Starts `argv` (the sandbox around the runner) with the runner's file
  // descriptors as protocol.h numbers them, stdin from /dev/null, stdout and
  // stderr into `log_path`, and a fixed minimal environment: bwrap's monitor
  // is the sandbox's PID 1, readable by the runner's uid through /proc, so it
  // must hold nothing of this process (its environment holds the validator's
  // secrets). With several ranks, rank r >= 1's descriptors go where
  // protocol.h's rank_fd() says (params_fds and logits_fds: one per rank).
  void spawn(const std::vector<std::string>& argv_in, const std::string& log_path, const std::vector<int>& params_fds,
             int data_fd, const std::vector<int>& logits_fds, int trajectory_fd) {
    const int ranks = static_cast<int>(params_fds.size());
    std::vector<int> runner_ends;
    for (int r = 0; r < ranks; ++r) {
      int sv[2];
      TORCH_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: ", std::strerror(errno));
      controls.push_back(sv[0]);
      runner_ends.push_back(sv[1]);
    }
    int info[2];
    TORCH_CHECK(::pipe2(info, O_CLOEXEC) == 0, "pipe: ", std::strerror(errno));
    log = ::open(log_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    TORCH_CHECK(log >= 0, "cannot create the runner's log ", log_path, ": ", std::strerror(errno));
    std::vector<int> src{runner_ends[0], params_fds[0], data_fd, logits_fds[0], info[1], log, trajectory_fd};
    std::vector<int> dst{proto::kControlFd, proto::kParamsFd, proto::kDataFd, proto::kLogitsFd, proto::kInfoFd, 1,
                         proto::kTrajectoryFd};
    constexpr size_t kLog = 5;  // src's index of the log, stderr too
    for (int r = 1; r < ranks; ++r) {
      src.insert(src.end(), {runner_ends[r], params_fds[r], logits_fds[r]});
      dst.insert(dst.end(), {proto::rank_fd(r, proto::RankFd::kControl), proto::rank_fd(r, proto::RankFd::kParams),
                             proto::rank_fd(r, proto::RankFd::kLogits)});
    }
    const int past = *std::max_element(dst.begin(), dst.end()) + 1;  // the first descriptor the child does not get
    // Sources moved above the target range first, so no dup2 clobbers another source.
    const size_t n = src.size();
    std::vector<int> high(n);
    for (size_t k = 0; k < n; ++k) high[k] = ::fcntl(src[k], F_DUPFD_CLOEXEC, std::max(64, past));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    for (size_t k = 0; k < n; ++k) posix_spawn_file_actions_adddup2(&fa, high[k], dst[k]);
    posix_spawn_file_actions_adddup2(&fa, high[kLog], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, past);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    std::vector<std::string> args = argv_in;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string path_env = "PATH=/usr/local/bin:/usr/bin:/bin";
    char* envp[] = {path_env.data(), nullptr};
    const int rc = ::posix_spawnp(&bwrap, argv[0], &fa, &attr, argv.data(), envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    for (int fd : high) ::close(fd);
    for (int fd : runner_ends) ::close(fd);
    ::close(info[1]);
    if (rc != 0) {
      ::close(info[0]);
      bwrap = -1;
      TORCH_CHECK(false, "cannot start the sandbox (", args[0], "): ", std::strerror(rc));
    }
    inner = read_child_pid(info[0], 10000);
    ::close(info[0]);
  }

  // Polls for bwrap's exit for up to `seconds`; true once it is reaped.
  bool await_exit(double seconds) {
    for (auto start = Clock::now(); !reaped && since(start) < seconds; ::usleep(10000)) {
      if (::waitpid(bwrap, &status, WNOHANG) == bwrap) reaped = true;
    }
    return reaped;
  }

  void kill_and_reap() {
    if (bwrap > 0 && !reaped) {
      if (inner > 0) {
        ::kill(inner, SIGKILL);
        // bwrap exits once the sandbox's PID 1 has ended, and PID 1 ends only
        // after every other process of its namespace is gone (the kernel
        // kills and waits for them): when bwrap is reaped, nothing is left.
        await_exit(30);  // a large process may take long to unmap
      }
      if (!reaped) {
        ::kill(bwrap, SIGKILL);
        while (::waitpid(bwrap, &status, 0) < 0 && errno == EINTR) {}
        reaped = true;
      }
    }
    for (int fd : controls) ::close(fd);
    controls.clear();
  }
  // Exit status after the control channel closed (the sandbox ended by itself).
  std::string describe_exit() {
    // bwrap exits right after its child: give it a moment.
    if (!await_exit(1)) return "the runner closed the control channel";
    if (WIFSIGNALED(status)) return "the runner was killed by signal " + std::to_string(WTERMSIG(status));
    return "the runner exited with status " + std::to_string(WEXITSTATUS(status)) + " before it was done";
  }
  ~Sandbox() {
    kill_and_reap();
    if (log >= 0) ::close(log);
  }
};

// A checkpoint start's perturbation: p *= 1 + sigma * N(0, 1), in float32,
// rounded once. Each tensor draws from its own generator (seed, index), as
// init_parameter does (salted: another stream than a random start's), in
// chunks so that the float32 noise of a 7B embedding (0.55G elements) never
// sits on the device at once; the chunks draw in order, so the result is
// the same for a seed and a device type whoever regenerates it.
void perturb(torch::Tensor& p, size_t index, uint64_t seed, double sigma) {
  constexpr int64_t kChunk = int64_t{1} << 24;
  constexpr uint64_t kSalt = 0x9e3779b97f4a7c15ULL;
  torch::NoGradGuard no_grad;
  auto gen = compat::seeded_generator(p.device(), (seed ^ kSalt) * 1000003ULL + index);
  auto flat = p.view({-1});
  for (int64_t off = 0; off < flat.numel(); off += kChunk) {
    auto part = flat.narrow(0, off, std::min(kChunk, flat.numel() - off));
    auto factor = at::normal(1.0, sigma, part.sizes(), gen, part.options().dtype(torch::kFloat32));
    part.copy_(part.to(torch::kFloat32).mul_(factor));
  }
}

}  // namespace

void read_checkpoint_tensor(const CheckpointTensor& t, torch::Tensor dst) {
  // Straight into dst when it is host memory of the file's dtype (the 7B
  // checkpoint in bf16), else through one host temporary.
  const bool direct = dst.device().is_cpu() && dst.scalar_type() == t.dtype && dst.is_contiguous();
  auto host = direct ? dst : torch::empty(dst.sizes(), torch::TensorOptions().dtype(t.dtype));
  if (host.nbytes() != static_cast<size_t>(t.nbytes)) {
    throw UserInputError(t.file + ": tensor " + t.name + " holds " + std::to_string(t.nbytes) +
                         " bytes, the model expects " + std::to_string(host.nbytes()));
  }
  const int fd = ::open(t.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserInputError(t.file + ": cannot open: " + std::strerror(errno));
  char* out = static_cast<char*>(host.data_ptr());
  for (int64_t done = 0; done < t.nbytes;) {
    const ssize_t n = ::pread(fd, out + done, static_cast<size_t>(t.nbytes - done), t.offset + done);
    if (n <= 0) {
      ::close(fd);
      throw UserInputError(t.file + ": truncated while reading tensor " + t.name);
    }
    done += n;
  }
  ::close(fd);
  if (!direct) {
    torch::NoGradGuard no_grad;
    dst.copy_(host);
  }
}

Evaluator::Evaluator(EvalConfig cfg) : cfg_(std::move(cfg)) {
  const int64_t B = cfg_.batch_size, S = cfg_.seq_len;
  if (!(B > 0 && S > 1 && cfg_.steps > 0 && cfg_.warmup_steps >= 0)) {
    throw UserInputError("evaluator: bad batch size, sequence length or step count");
  }
  if (!(cfg_.checkpoint_perturbation >= 0 && cfg_.checkpoint_perturbation < 0.1)) {
    throw UserInputError("evaluator: the checkpoint perturbation must be in [0, 0.1)");
  }
  layout_ = proto::param_layout(cfg_.model, cfg_.dtype);
  params_ = SharedRegion::create(layout_.bytes, cfg_.device);
  const int64_t rows = std::max(cfg_.steps, cfg_.warmup_steps) * B;
  data_ = SharedRegion::create(static_cast<size_t>(rows * S) * sizeof(int64_t), torch::kCPU);
  logits_ = SharedRegion::create(static_cast<size_t>(B * (S - 1) * cfg_.model.vocab_size) * c10::elementSize(cfg_.dtype),
                                 cfg_.device);
  logits_view_ = logits_.view(0, {B, S - 1, cfg_.model.vocab_size}, cfg_.dtype);
  // The trajectory: host memory, (steps - 1) slots of the parameter memory,
  // where it is recorded (the caller says: where the device's limits for it
  // are calibrated, and in calibrations). Otherwise, and with one step, one
  // page, so that its descriptor exists, and INIT says nothing is recorded.
  // After the slots, the loss head's record of every row of each batch
  // (train_api.h, version 5; protocol.h), then, where the caller says, the
  // MLP's (version 6): each rank writes its own share.
  trajectory_slots_ = cfg_.record_trajectory ? cfg_.steps - 1 : 0;
  cfg_.record_layers = cfg_.record_layers && trajectory_slots_ > 0;
  trajectory_bytes_ = trajectory_slots_ > 0 ? proto::trajectory_region_bytes(cfg_.model, params_.size(), B, S,
                                                                            cfg_.steps, cfg_.record_layers)
                                            : 0;
  trajectory_ = SharedRegion::create(std::max<size_t>(1, trajectory_bytes_), torch::kCPU);
  check_replay_fits();
  cfg_.probe = cfg_.probe.to(cfg_.device);
  model_ = Qwen2ForCausalLM(cfg_.model, proto::region_allocator(params_, layout_, cfg_.dtype), cfg_.attention);
  allocate_other_ranks();
}

Evaluator::~Evaluator() = default;

void Evaluator::load_checkpoint(const std::vector<CheckpointTensor>& tensors) {
  std::map<std::string, const CheckpointTensor*> by_name;
  for (const auto& t : tensors) {
    if (!by_name.emplace(t.name, &t).second) throw UserInputError("checkpoint: tensor " + t.name + " appears twice");
  }
  std::map<std::string, size_t> offset;
  for (size_t i = 0; i < layout_.specs.size(); ++i) offset[layout_.specs[i].name] = layout_.offsets[i];
  // Zeros between the tensors too: the copy writes the layout's every byte.
  auto host = compat::host_buffer(static_cast<int64_t>(layout_.bytes), cfg_.device).zero_();
  std::vector<torch::Tensor> views;
  auto base = static_cast<char*>(host.data_ptr());
  for (auto& item : model_->named_parameters()) {
    auto it = by_name.find(item.key());
    if (it == by_name.end()) throw UserInputError("checkpoint: no tensor " + item.key());
    auto view = torch::from_blob(base + offset.at(item.key()), item.value().sizes(),
                                 torch::TensorOptions().dtype(cfg_.dtype));
    read_checkpoint_tensor(*it->second, view);
    views.push_back(view);
    by_name.erase(it);
  }
  if (!by_name.empty()) throw UserInputError("checkpoint: tensor " + by_name.begin()->first + " is not the model's");
  checkpoint_ = host;
  checkpoint_views_ = std::move(views);
}

void Evaluator::write_public_start() {
  if (!has_checkpoint()) return;
  const auto t = Clock::now();
  params_.view(0, {static_cast<int64_t>(layout_.bytes)}, torch::kUInt8).copy_(checkpoint_);
  compat::cuda_synchronize(cfg_.device);
  checkpoint_seconds_ += since(t);
}

void Evaluator::write_seeded_start(uint64_t seed) {
  if (!has_checkpoint()) {
    init_weights(model_, seed);
  } else if (cfg_.checkpoint_perturbation > 0) {
    size_t i = 0;
    for (auto& item : model_->named_parameters()) perturb(item.value(), i++, seed, cfg_.checkpoint_perturbation);
  }
  release_device_cache();
}

void Evaluator::init_parameters(uint64_t seed) {
  write_public_start();
  write_seeded_start(seed);
}

void Evaluator::start_tensor(torch::Tensor& dst, const std::string& name, size_t index, uint64_t seed) {
  if (!has_checkpoint()) return init_parameter(dst, name, index, seed);
  dst.copy_(checkpoint_views_.at(index));
  if (cfg_.checkpoint_perturbation > 0) perturb(dst, index, seed, cfg_.checkpoint_perturbation);
}

// Every rank's parameters (rank 0 first), then every rank's logits.
std::vector<int64_t> Evaluator::memory_digest() {
  auto digest = [&](const SharedRegion& region) {
    return keyed_digest(region.view(0, {static_cast<int64_t>(region.size())}, torch::kUInt8), digest_key_);
  };
  std::vector<int64_t> out{digest(params_)};
  for (const auto& r : other_ranks_) out.push_back(digest(r.params));
  out.push_back(digest(logits_));
  for (const auto& r : other_ranks_) out.push_back(digest(r.logits));
  // Not the trajectory: the judge reads each of its bytes once (trajectory.cpp).
  return out;
}

void Evaluator::scrub(uint64_t warmup_seed) {
  // Parameters: zeros (the gaps between tensors and the region's tail
  // included), then warmup's own start (the checkpoint perturbed by warmup's
  // seed, or warmup's random initialisation); the timed run's seeded part is
  // written only once the clock runs. Every other rank's region gets rank
  // 0's whole, padding included.
  params_.view(0, {static_cast<int64_t>(params_.size())}, torch::kUInt8).zero_();
  if (cfg_.warmup_steps > 0) init_parameters(warmup_seed);
  replicate_parameters();
  data_.view(0, {static_cast<int64_t>(data_.size())}, torch::kUInt8).zero_();
  // The logits regions whole, their tails beyond [B, S-1, V] too (a region is
  // rounded up to the page or the device's granularity): a runner could leave
  // bytes there for the next one.
  auto poison = [&](const SharedRegion& region) {
    region.view(0, {static_cast<int64_t>(region.size() / c10::elementSize(cfg_.dtype))}, cfg_.dtype).fill_(std::nan(""));
  };
  poison(logits_);
  for (const auto& r : other_ranks_) poison(r.logits);
  poison(trajectory_);  // an unrecorded step shows as NaN
  synchronize_ranks();
}

// The judge's own temporaries (initialisation, probe, comparison, hashing)
// would otherwise stay cached by this process's allocator, and the cards
// belong to the submission.
void Evaluator::release_device_cache() {
  synchronize_ranks();
  compat::cuda_empty_cache(cfg_.device);  // every device's cache
}

std::vector<double> Evaluator::cell_losses(const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  auto ids = tokens.to(cfg_.device);  // [R, S]
  std::vector<torch::Tensor> per_cell;
  for (int64_t r = 0; r < ids.size(0); r += 2) {
    auto rows = ids.narrow(0, r, std::min<int64_t>(2, ids.size(0) - r));  // [r', S]
    auto logits = model_->forward(rows).narrow(1, 0, ids.size(1) - 1).to(torch::kFloat32);  // [r', S-1, V]
    auto nll = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(2)}), rows.narrow(1, 1, ids.size(1) - 1).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // [r' * (S-1)]
    auto cells = nll.view({rows.size(0), -1}).tensor_split(kCellsPerRow, 1);  // kCellsPerRow x [r', ~(S-1)/k]
    std::vector<torch::Tensor> means;
    for (auto& c : cells) means.push_back(c.mean(1));
    per_cell.push_back(torch::stack(means, 1).reshape({-1}).to(torch::kFloat64));  // [r' * kCellsPerRow]
  }
  auto host = torch::cat(per_cell).to(torch::kCPU).contiguous();
  return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
}

double Evaluator::probe_loss() {
  torch::NoGradGuard no_grad;
  auto loss = causal_lm_loss(model_->forward(cfg_.probe), cfg_.probe);
  return loss.item<double>();
}

// One run's state: its inputs, its sandbox, the outcome so far and, once a
// phase fails, why. The phases below fill it in order; the first that fails
// ends the run through failed().
struct Evaluator::RunState {
  RunState(const RunInputs& inputs, const std::function<void(const std::string&)>& report)
      : in(inputs), progress(report) {}
  const RunInputs& in;
  const std::function<void(const std::string&)>& progress;
  const Clock::time_point t_start = Clock::now();
  Clock::time_point t_mark = t_start;
  RunOutcome out;
  Sandbox box;
  std::string code, msg;         // why the run failed, once a phase did
  std::vector<proto::Packet> p;  // per rank, the last message received

  void say(const char* phase) const {
    if (progress) progress(phase);
  }
  // Timing capture: the seconds since the last mark, under `phase`.
  void mark(const char* phase) {
    const auto now = Clock::now();
    out.phase_seconds.emplace_back(phase, std::chrono::duration<double>(now - t_mark).count());
    t_mark = now;
  }
  int ranks() const { return static_cast<int>(box.controls.size()); }
  // " (rank r)" in messages when there are several ranks; nothing with one.
  std::string of_rank(int r) const { return ranks() > 1 ? " (rank " + std::to_string(r) + ")" : ""; }

  // Sends `type` to every rank, rank 0 first; false if one is gone.
  bool send_all(proto::Type type, const void* payload = nullptr) {
    for (int fd : box.controls) {
      if (!proto::send_msg(fd, type, payload)) return false;
    }
    return true;
  }

  // Reads rank r's next message if one is there and checks it is `want`.
  // False with `code` empty: nothing read (`eof` says whether the channel
  // ended); false with `code` set: the run failed.
  bool receive(int r, proto::Type want, const char* phase, bool* eof) {
    *eof = false;
    bool got = false;
    try {
      got = proto::recv_msg(box.controls[r], 0, &p[r], eof);
    } catch (const proto::ProtocolError& e) {
      code = "protocol";
      msg = std::string("garbage on the control channel during ") + phase + of_rank(r) + ": " + e.what();
      return false;
    }
    if (!got) return false;
    if (p[r].type == proto::Type::kError) {
      const auto kind = static_cast<proto::ErrorKind>(p[r].body.error.kind);
      code = kind == proto::ErrorKind::kOutOfMemory ? "oom"
             : kind == proto::ErrorKind::kApiVersion || kind == proto::ErrorKind::kPluginLoad ? "api_version"
             : kind == proto::ErrorKind::kLogits ? "logits"
                                                 : "crash";
      msg = std::string("during ") + phase + ", the runner" + of_rank(r) + " reported: " +
            sanitize(p[r].body.error.text, sizeof p[r].body.error.text);
      return false;
    }
    if (p[r].type != want) {
      code = "protocol";
      msg = std::string("unexpected message during ") + phase + of_rank(r);
      return false;
    }
    return true;
  }

  // Waits for one message of `want` from every rank, in whatever order they
  // come, within one timeout; on anything else fills the failure.
  bool await(proto::Type want, double timeout_s, const char* phase) {
    p.resize(box.controls.size());
    const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    std::vector<int> waiting(box.controls.size());
    for (size_t r = 0; r < waiting.size(); ++r) waiting[r] = static_cast<int>(r);
    while (!waiting.empty()) {
      std::vector<pollfd> fds;
      for (int r : waiting) fds.push_back({box.controls[r], POLLIN, 0});
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, left)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        code = "timeout";
        msg = std::string(phase) + (ranks() > 1 ? " of rank " + std::to_string(waiting[0]) : "") +
              " did not finish within " + std::to_string(static_cast<int>(timeout_s)) + " s";
        return false;
      }
      std::vector<int> still;
      for (size_t k = 0; k < fds.size(); ++k) {
        const int r = waiting[k];
        bool eof = false;
        if (fds[k].revents && receive(r, want, phase, &eof)) continue;
        if (!code.empty()) return false;
        if (!eof) {
          still.push_back(r);
          continue;
        }
        // A rank's channel ended: when another rank said why (it failed and
        // took the sandbox down with it), that is the run's failure.
        for (int o : waiting) {
          bool other_eof = false;
          if (o != r && !receive(o, want, phase, &other_eof) && !code.empty()) return false;
        }
        code = "crash";
        msg = box.describe_exit() + " (during " + phase + of_rank(r) + ")";
        return false;
      }
      waiting = std::move(still);
    }
    return true;
  }

  // The runner speaks only when spoken to: a message already waiting before
  // the next command was sent by something other than the runner's own
  // sequence (e.g. a plugin thread forging DONE ahead of GO).
  bool quiet(const char* before) {
    for (int r = 0; r < ranks(); ++r) {
      pollfd pfd{box.controls[r], POLLIN, 0};
      if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN)) {
        code = "protocol";
        msg = std::string("a message arrived out of turn, before ") + before + of_rank(r);
        return false;
      }
    }
    return true;
  }

  // A run that missed its next message: end the sandbox, then say why.
  RunOutcome failed() {
    box.kill_and_reap();
    std::string why = msg.empty() ? box.describe_exit() : msg;
    const std::string tail = log_tail(box.log);
    if (!tail.empty() && code != "protocol") why += "; the runner's last output: " + tail;
    out.completed = false;
    out.seconds = 0;
    out.failure_code = code.empty() ? "crash" : code;
    out.failure_message = why;
    out.overhead_seconds = since(t_start);
    return out;
  }
};

RunOutcome Evaluator::run(const RunInputs& in, const std::function<void(const std::string&)>& progress) {
  RunState st(in, progress);
  last_seed_ = in.seed;
  post_kill_digest_.clear();
  checkpoint_seconds_ = 0;
  check_inputs(in);
  prepare(st);
  spawn(st);
  if (!start_up(st) || !warmup(st) || !timed(st)) return st.failed();
  kill_and_fingerprint(st);
  if (!ranks_agree(st)) return st.failed();
  measure(st);
  return st.out;
}

void Evaluator::check_inputs(const RunInputs& in) const {
  TORCH_CHECK(in.timed_tokens.sizes().vec() == std::vector<int64_t>({cfg_.steps * cfg_.batch_size, cfg_.seq_len}),
              "evaluator: timed tokens ", in.timed_tokens.sizes(), " are not [steps * batch, seq_len]");
  TORCH_CHECK(!in.argv.empty(), "evaluator: empty runner command");
  TORCH_CHECK(!in.log_path.empty(), "evaluator: no log path for the runner's output");
}

// Before the spawn: nothing of an earlier run may be left to read, since a
// plugin's static initialisers run inside dlopen, before READY.
void Evaluator::prepare(RunState& st) {
  if (st.in.reference) {
    init_parameters(st.in.seed);
    st.out.initial_probe_loss = probe_loss();
    compat::cuda_synchronize(cfg_.device);
    st.mark("initial_probe");
  }
  scrub(st.in.warmup_seed);
  st.mark("scrub");
}

void Evaluator::spawn(RunState& st) {
  std::vector<int> params_fds{params_.fd()}, logits_fds{logits_.fd()};
  for (const auto& r : other_ranks_) {
    params_fds.push_back(r.params.fd());
    logits_fds.push_back(r.logits.fd());
  }
  st.box.spawn(st.in.argv, st.in.log_path, params_fds, data_.fd(), logits_fds, trajectory_.fd());
  st.mark("spawn");
}

// INIT to every rank (its own device, regions and rank), then READY from
// each: the runners have mapped the memory, met, and loaded the plugin.
bool Evaluator::start_up(RunState& st) {
  st.say("start");
  for (int r = 0; r < ranks(); ++r) {
    const torch::Device& device = r == 0 ? cfg_.device : other_ranks_[r - 1].device;
    proto::Init init{};
    init.model = cfg_.model;
    init.device_type = static_cast<int32_t>(device.type());
    init.device_index = device.has_index() ? device.index() : -1;
    init.dtype = static_cast<int32_t>(cfg_.dtype);
    init.attention = static_cast<int32_t>(cfg_.attention);
    init.batch_size = cfg_.batch_size;
    init.seq_len = cfg_.seq_len;
    init.steps = cfg_.steps;
    init.optimizer = cfg_.optimizer;
    init.params_bytes = params_.size();
    init.data_bytes = data_.size();
    init.logits_bytes = r == 0 ? logits_.size() : other_ranks_[r - 1].logits.size();
    init.trajectory_bytes = st.in.reference ? 0 : trajectory_bytes_;
    init.record_layers = init.trajectory_bytes > 0 && cfg_.record_layers ? 1 : 0;
    init.rank = r;
    init.world_size = ranks();
    init.rendezvous_timeout_ms = static_cast<int64_t>(cfg_.start_timeout_s * 1000);
    if (!proto::send_msg(st.box.controls[r], proto::Type::kInit, &init)) return false;
  }
  if (!st.await(proto::Type::kReady, cfg_.start_timeout_s, "start-up")) return false;
  st.mark("start_to_ready");  // sandbox and runners start, CUDA contexts, shared memory mapped, ranks met, plugin loaded
  return true;
}

torch::Tensor Evaluator::batch_rows(int64_t rows) const {
  return data_.view(0, {rows, cfg_.seq_len}, torch::kInt64);
}

// Warmup's batches (other rows than the timed run's), WARMUP, then WARM.
bool Evaluator::warmup(RunState& st) {
  if (cfg_.warmup_steps <= 0) return true;
  st.say("warmup");
  batch_rows(cfg_.warmup_steps * cfg_.batch_size).copy_(st.in.warmup_tokens);
  proto::Warmup w{cfg_.warmup_steps};
  if (!st.quiet("WARMUP") || !st.send_all(proto::Type::kWarmup, &w) ||
      !st.await(proto::Type::kWarm, cfg_.warmup_timeout_s, "warmup")) {
    return false;
  }
  st.mark("warmup");
  return true;
}

// The timed run. The clock starts before the run's seeded start and data
// are written: nothing of the timed run exists while the clock stands. With
// several ranks the seeded start reaches ranks 1..G-1 as a copy of rank 0's,
// on the clock too, and the clock runs to the last rank's DONE.
bool Evaluator::timed(RunState& st) {
  st.say("timed");
  write_public_start();  // the checkpoint is public: outside the clock
  logits_view_.fill_(std::nan(""));  // unwritten shows as NaN
  for (auto& r : other_ranks_) r.logits_view.fill_(std::nan(""));
  synchronize_ranks();
  if (!st.quiet("GO")) return false;
  st.mark("before_go");  // the logits buffers poisoned, the devices synchronised
  const auto t0 = Clock::now();
  write_seeded_start(st.in.seed);
  replicate_parameters();
  batch_rows(cfg_.steps * cfg_.batch_size).copy_(st.in.timed_tokens);
  const bool done = st.send_all(proto::Type::kGo) && st.await(proto::Type::kDone, cfg_.timed_timeout_s, "the timed run");
  st.out.seconds = since(t0);
  if (!done) return false;
  st.mark("timed");
  return true;
}

// At DONE: the sandbox dies, so nothing any rank does from here on lands;
// then the memory's keyed hash, which compare_last_with checks still holds.
// Several ranks report for themselves: the tokens are their sum (each
// trained its share), the loss rank 0's, the peak memory the largest.
void Evaluator::kill_and_fingerprint(RunState& st) {
  st.box.kill_and_reap();
  st.mark("kill");
  digest_key_ = fresh_key();
  post_kill_digest_ = memory_digest();
  st.mark("fingerprint");
  st.out.completed = true;
  st.out.reported_tokens = 0;
  st.out.reported_peak_memory = 0;
  for (const auto& p : st.p) {
    st.out.reported_tokens += p.body.done.total_tokens;
    st.out.reported_peak_memory = std::max(st.out.reported_peak_memory, p.body.done.peak_memory_bytes);
  }
  st.out.reported_loss = st.p[0].body.done.final_loss;
}

// Every rank's parameters must be rank 0's at DONE: rank 0's are the ones
// verified, and a rank that trained otherwise did not do what they show.
// Compared byte for byte (the parameters, not the regions' padding), a
// slice at a time on rank 0's device.
bool Evaluator::ranks_agree(RunState& st) {
  if (other_ranks_.empty()) return true;
  torch::NoGradGuard no_grad;
  const auto bytes = static_cast<int64_t>(layout_.bytes);
  const auto mine = params_.view(0, {bytes}, torch::kUInt8);
  constexpr int64_t kSlice = int64_t{1} << 28;
  for (int r = 1; r < ranks(); ++r) {
    const auto theirs = other_ranks_[r - 1].params.view(0, {bytes}, torch::kUInt8);
    for (int64_t at = 0; at < bytes; at += kSlice) {
      const int64_t n = std::min(kSlice, bytes - at);
      if (!torch::equal(mine.narrow(0, at, n), theirs.narrow(0, at, n).to(cfg_.device))) {
        st.code = "rank_divergence";
        st.msg = "at DONE, rank " + std::to_string(r) +
                 "'s parameters differ from rank 0's: the ranks did not apply the same updates";
        release_device_cache();
        return false;
      }
    }
  }
  release_device_cache();
  st.mark("ranks_agree");
  return true;
}

// The judge's own measurements of the final weights (rank 0's).
void Evaluator::measure(RunState& st) {
  st.say("verify");
  st.out.probe_loss = probe_loss();
  st.mark("probe_loss");
  st.out.cell_losses = cell_losses(st.in.timed_tokens);
  st.mark("cell_losses");
  if (!st.in.reference) {
    try {
      st.out.trajectory = trajectory_errors(st.in.timed_tokens, st.in.seed);
    } catch (const c10::OutOfMemoryError&) {
      release_device_cache();
      throw UserInputError("the judge's replay of the timed steps ran out of memory on " + cfg_.device.str() +
                           ": it holds five to six copies of the parameters (" +
                           std::to_string(params_.size() >> 20) + " MiB each) beside one step's activations; judge on "
                           "a device with more memory (for Qwen2.5-7B an H200)");
    }
  }
  st.mark("trajectory");
  timed_tokens_ = st.in.timed_tokens.clone();
  last_batch_ = timed_tokens_.narrow(0, (cfg_.steps - 1) * cfg_.batch_size, cfg_.batch_size);
  last_probe_loss_ = st.out.probe_loss;
  const auto& cells = st.out.cell_losses;  // the last batch's cells are the last B * kCellsPerRow
  last_batch_loss_ = mean(cells.end() - cfg_.batch_size * kCellsPerRow, cells.end());
  release_device_cache();
  st.mark("release_cache");
  st.out.overhead_seconds = since(st.t_start) - st.out.seconds;
  st.out.checkpoint_seconds = checkpoint_seconds_;
}

// Ranks 1..G-1's regions, on their own devices: a full copy of the
// parameters each, and the logits of its B / G rows.
void Evaluator::allocate_other_ranks() {
  const int64_t G = static_cast<int64_t>(cfg_.rank_devices.size());
  if (G <= 1) return;
  if (G > proto::kMaxRanks) throw UserInputError("evaluator: at most " + std::to_string(proto::kMaxRanks) + " ranks");
  if (cfg_.batch_size % G != 0) {
    throw UserInputError("evaluator: " + std::to_string(G) + " ranks do not divide a batch of " +
                         std::to_string(cfg_.batch_size));
  }
  if (cfg_.rank_devices[0] != cfg_.device) throw UserInputError("evaluator: rank 0's device must be the evaluation's");
  const int64_t rows = cfg_.batch_size / G, S = cfg_.seq_len, V = cfg_.model.vocab_size;
  for (int64_t r = 1; r < G; ++r) {
    const torch::Device device = cfg_.rank_devices[r];
    if (device.type() != cfg_.device.type()) throw UserInputError("evaluator: the ranks' devices are of different kinds");
    OtherRank o{device, SharedRegion::create(layout_.bytes, device),
                SharedRegion::create(static_cast<size_t>(rows * (S - 1) * V) * c10::elementSize(cfg_.dtype), device),
                torch::Tensor()};
    // replicate_parameters() copies rank 0's region whole: the same size leaves no byte unwritten.
    TORCH_CHECK(o.params.size() == params_.size(), "evaluator: rank ", r, "'s parameter region is ", o.params.size(),
                " bytes, rank 0's ", params_.size());
    o.logits_view = o.logits.view(0, {rows, S - 1, V}, cfg_.dtype);
    other_ranks_.push_back(std::move(o));
  }
}

void Evaluator::replicate_parameters() {
  if (other_ranks_.empty()) return;
  const auto src = params_.view(0, {static_cast<int64_t>(params_.size())}, torch::kUInt8);
  for (auto& r : other_ranks_) r.params.view(0, {static_cast<int64_t>(r.params.size())}, torch::kUInt8).copy_(src);
  synchronize_ranks();
}

void Evaluator::synchronize_ranks() {
  compat::cuda_synchronize(cfg_.device);
  for (const auto& r : other_ranks_) compat::cuda_synchronize(r.device);
}

torch::Tensor Evaluator::rank_logits(int r) const {
  if (r == 0) return ranks() == 1 ? logits_view_ : logits_view_.narrow(0, 0, cfg_.batch_size / ranks());
  return other_ranks_[r - 1].logits_view;
}

int64_t Evaluator::keep_last() {
  Kept k;
  k.seed = last_seed_;
  // One host buffer: the parameter region as it is (ranks agree byte for
  // byte, so rank 0's), then every rank's logits rows in order.
  const auto pbytes = static_cast<int64_t>(layout_.bytes);
  std::vector<torch::Tensor> rows;
  int64_t lbytes = 0;
  for (int r = 0; r < ranks(); ++r) {
    rows.push_back(rank_logits(r));
    lbytes += rows.back().numel() * static_cast<int64_t>(rows.back().element_size());
  }
  k.buffer = take_host_buffer(pbytes + lbytes);
  k.buffer.narrow(0, 0, pbytes).copy_(params_.view(0, {pbytes}, torch::kUInt8));
  auto* base = static_cast<char*>(k.buffer.data_ptr());
  std::map<std::string, size_t> offset;
  for (size_t i = 0; i < layout_.specs.size(); ++i) offset[layout_.specs[i].name] = layout_.offsets[i];
  for (auto& item : model_->named_parameters()) {
    k.weights.push_back(torch::from_blob(base + offset.at(item.key()), item.value().sizes(), torch::TensorOptions().dtype(cfg_.dtype)));
  }
  auto* at = base + pbytes;
  std::vector<int64_t> shape = rows[0].sizes().vec();
  shape[0] = 0;
  for (const auto& r : rows) {
    torch::from_blob(at, r.sizes(), r.options().device(torch::kCPU)).copy_(r);
    at += r.numel() * r.element_size();
    shape[0] += r.size(0);
  }
  k.logits = torch::from_blob(base + pbytes, shape, rows[0].options().device(torch::kCPU));  // [B, S-1, V]
  const int64_t id = next_id_++;
  kept_[id] = std::move(k);
  return id;
}

// A released run's host buffer is kept for the next keep_last: page-locking
// tens of GiB costs seconds, and a validator keeps a run of the same size for
// every seed of every evaluation.
torch::Tensor Evaluator::take_host_buffer(int64_t bytes) {
  for (auto it = spare_host_.begin(); it != spare_host_.end(); ++it) {
    if (it->numel() == bytes) {
      auto b = *it;
      spare_host_.erase(it);
      return b;
    }
  }
  return compat::host_buffer(bytes, cfg_.device);
}

void Evaluator::release(int64_t id) {
  auto it = kept_.find(id);
  if (it == kept_.end()) return;
  if (it->second.buffer.defined() && spare_host_.size() < kSpareHostBuffers) spare_host_.push_back(it->second.buffer);
  kept_.erase(it);
}

std::string tensor_kind(const std::string& name) {
  std::string out;
  size_t i = 0;
  while (i < name.size()) {
    size_t j = name.find('.', i);
    if (j == std::string::npos) j = name.size();
    const std::string seg = name.substr(i, j - i);
    out += !seg.empty() && seg.find_first_not_of("0123456789") == std::string::npos ? "*" : seg;
    if (j < name.size()) out += '.';
    i = j + 1;
  }
  return out;
}

Comparison Evaluator::compare_last_with(int64_t id, uint64_t seed) {
  auto it = kept_.find(id);
  TORCH_CHECK(it != kept_.end(), "evaluator: no kept run ", id);
  const Kept& ref = it->second;
  TORCH_CHECK(ref.seed == seed && last_seed_ == seed, "evaluator: the kept run used another seed");
  torch::NoGradGuard no_grad;
  Comparison c;
  auto t = std::chrono::steady_clock::now();  // the parts' clock (mark, below)
  // Sums stay on the device until one read each (a read per tensor would
  // wait on the device per tensor); the host then adds them in double, in order.
  auto to_host = [](const std::vector<torch::Tensor>& sums) {
    return torch::stack(sums).to(torch::kFloat64).to(torch::kCPU).contiguous();
  };
  // Logits, one batch row at a time to bound device memory: per row,
  // ||ours - ref||^2 and ||ref||^2.
  // Rank r returned rows [r * B/G, (r + 1) * B/G).
  std::vector<torch::Tensor> row_sums;
  const int64_t per_rank = cfg_.batch_size / ranks();
  for (int64_t b = 0; b < cfg_.batch_size; ++b) {
    auto r = ref.logits[b].to(cfg_.device).to(torch::kFloat32);
    auto d = rank_logits(static_cast<int>(b / per_rank))[b % per_rank].to(cfg_.device).to(torch::kFloat32) - r;
    row_sums.push_back(torch::stack({d.pow(2).sum(), r.pow(2).sum()}));
  }
  const auto rows = to_host(row_sums);
  const double* row = rows.data_ptr<double>();
  double num = 0, den = 0;
  for (int64_t b = 0; b < cfg_.batch_size; ++b) {
    num += row[2 * b];
    den += row[2 * b + 1];
  }
  c.logits_rel_error = std::sqrt(num / std::max(den, 1e-30));
  if (std::isnan(num)) c.logits_rel_error = std::numeric_limits<double>::infinity();

  // Weights: the update of every tensor against the reference's, from the
  // regenerated initialisation. Per tensor: ||u - u_ref||^2, ||u_ref||^2, and
  // how many elements changed here and in the reference.
  std::vector<torch::Tensor> tensor_sums;
  std::vector<std::string> names;
  double total = 0;
  size_t i = 0;
  for (auto& item : model_->named_parameters()) {
    const auto& w = item.value();
    auto w0 = torch::empty_like(w);
    start_tensor(w0, item.key(), i, seed);
    auto wr = ref.weights[i].to(cfg_.device);
    auto w0f = w0.to(torch::kFloat32);
    auto u = w.to(torch::kFloat32) - w0f;
    auto ur = wr.to(torch::kFloat32) - w0f;
    tensor_sums.push_back(torch::stack({(u - ur).pow(2).sum().to(torch::kFloat64), ur.pow(2).sum().to(torch::kFloat64),
                                        w.ne(w0).sum().to(torch::kFloat64), wr.ne(w0).sum().to(torch::kFloat64)}));
    names.push_back(item.key());
    total += static_cast<double>(w.numel());
    ++i;
  }
  const auto stats = to_host(tensor_sums);
  const double* st = stats.data_ptr<double>();
  double unum = 0, uden = 0, changed = 0, ref_changed = 0;
  std::map<std::string, std::pair<double, double>> kinds;  // kind -> (sum n, sum d)
  for (size_t t = 0; t < names.size(); ++t) {
    const double n = st[4 * t], d = st[4 * t + 1], ch = st[4 * t + 2], rch = st[4 * t + 3];
    unum += n;
    uden += d;
    auto& k = kinds[tensor_kind(names[t])];
    k.first += n;
    k.second += d;
    changed += ch;
    ref_changed += rch;
    if (d > 0) c.max_tensor_rel_error = std::max(c.max_tensor_rel_error, std::sqrt(n / d));
    if (std::isnan(n)) c.max_tensor_rel_error = std::numeric_limits<double>::infinity();
    if (rch > 0 && ch == 0) c.frozen.push_back(names[t]);
  }
  for (const auto& [kind, nd] : kinds) {
    if (nd.second <= 0) continue;  // the reference left it unchanged: the frozen check's business
    c.kind_rel_errors.emplace_back(kind, std::isnan(nd.first) ? std::numeric_limits<double>::infinity() : std::sqrt(nd.first / nd.second));
  }
  c.update_rel_error = std::isnan(unum) ? std::numeric_limits<double>::infinity() : std::sqrt(unum / std::max(uden, 1e-30));
  c.changed_share = changed / total;
  c.reference_changed_share = ref_changed / total;
  // After every read the verdict rests on (probe loss, logits, weights), and
  // before group_shifts writes into the parameter memory (it puts back what it took).
  c.changed_after_kill = memory_digest() != post_kill_digest_;
  // Each part ends on a read to the host, so the clock needs no extra synchronisation.
  auto mark = [&](const char* part) {
    const auto now = std::chrono::steady_clock::now();
    c.phase_seconds.emplace_back(part, std::chrono::duration<double>(now - t).count());
    t = now;
  };
  mark("compare_weights");
  if (!c.changed_after_kill) {
    position_checks(ref, seed, c);
    mark("compare_positions");
    c.group_shifts = group_shifts(ref);
    mark("compare_groups");
  }
  release_device_cache();
  return c;
}

namespace {
// The group of a parameter for group_shifts, from its name.
std::string tensor_group(const std::string& name) {
  if (name.find("self_attn.") != std::string::npos) return "attention";
  if (name.find("mlp.") != std::string::npos) return "mlp";
  if (name.find("norm") != std::string::npos) return "norm";
  if (name.find("embed_tokens") != std::string::npos) return "embedding";
  return "head";  // lm_head.weight
}
}  // namespace

std::vector<Comparison::GroupShift> Evaluator::group_shifts(const Kept& ref) {
  torch::NoGradGuard no_grad;
  std::map<std::string, std::vector<size_t>> groups;  // group -> parameter indices
  std::vector<torch::Tensor> params;
  for (auto& item : model_->named_parameters()) {
    groups[tensor_group(item.key())].push_back(params.size());
    params.push_back(item.value());
  }
  std::vector<Comparison::GroupShift> out;
  for (const auto& [group, members] : groups) {
    std::vector<torch::Tensor> own;  // this run's tensors of the group, put back below
    bool same = true;
    for (size_t m : members) {
      own.push_back(params[m].clone());
      params[m].copy_(ref.weights[m]);
      same = same && torch::equal(params[m], own.back());
    }
    if (same) {  // the hybrid is this run's model (bf16 norm weights, 1 + lr rounds to 1): no shift
      out.push_back({group, 0.0, 0.0});
      continue;
    }
    const auto cells = cell_losses(last_batch_);
    const double hybrid_batch = mean(cells.begin(), cells.end());
    const double hybrid_probe = probe_loss();
    for (size_t k = 0; k < members.size(); ++k) params[members[k]].copy_(own[k]);
    out.push_back({group, last_batch_loss_ - hybrid_batch, last_probe_loss_ - hybrid_probe});
  }
  return out;
}

}  // namespace tournament
