// The control channel between the trusted process and a runner: fixed-size
// binary messages over a SOCK_SEQPACKET socket pair (one message per packet).
// The trusted side accepts a packet only if its magic, type and exact size
// match; anything else is a protocol failure. It never parses free text.
//
// trusted -> runner: INIT, WARMUP, GO
// runner -> trusted: READY (plugin loaded, memory mapped), WARM (warmup done),
//                    DONE (timed call returned, logits written), ERROR
//
// The runner's start-up contract, owned here: file descriptors 3 control,
// 4 parameters, 5 batches, 6 logits (see SharedRegion), 7 the write end of
// the pipe on which bubblewrap (--info-fd) names the sandbox's PID 1, and 8
// the trajectory (host memory: the parameters after each timed step but the
// last, as the plugin's data.step_done() records them, then the loss head's
// record of every timed step, head_record_shape, then, where recorded, the
// layers', layer_record_shape; the parameters rank 0's only); stdin
// is /dev/null, stdout and stderr a log file of the run; the environment
// outside the sandbox is PATH alone.
//
// Several ranks (gpus_per_evaluation G > 1): one sandbox holds them all (so
// they share its private /tmp for c10d's rendezvous and its loopback network,
// and one kill of its PID 1 ends every rank). The sandbox runs
// `tournament-runner --ranks G PLUGIN`, which gets rank 0's descriptors as
// above and rank r's control, parameters and logits at rank_fd(r, ...); it
// starts one runner per rank with that rank's descriptors moved to 3, 4 and 6
// (the batch region, 5, is every rank's) and runs no plugin code itself. The
// trusted side speaks to every rank on its own control channel, the same
// messages as with one rank; INIT says which rank it is.
#pragma once

#include <tournament/model.h>
#include <tournament/optim.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "shared_memory.h"

namespace tournament::protocol {

constexpr uint32_t kMagic = 0x544e5254;  // "TRNT"
constexpr int kControlFd = 3, kParamsFd = 4, kDataFd = 5, kLogitsFd = 6, kInfoFd = 7, kTrajectoryFd = 8;
constexpr int kMaxRanks = 64;
enum class RankFd : int { kControl = 0, kParams = 1, kLogits = 2 };
// Where rank r >= 1's descriptor of `which` is when the sandbox starts.
constexpr int rank_fd(int rank, RankFd which) { return kTrajectoryFd + 1 + 3 * (rank - 1) + static_cast<int>(which); }

enum class Type : uint32_t { kInit = 1, kReady = 2, kWarmup = 3, kWarm = 4, kGo = 5, kDone = 6, kError = 7 };

struct Header {
  uint32_t magic;
  uint32_t type;
};

// What the runner needs, copied byte for byte (both sides are one build).
struct Init {
  Qwen2Config model;
  int32_t device_type, device_index, dtype, attention;
  int64_t batch_size, seq_len, steps;
  OptimizerConfig optimizer;
  uint64_t params_bytes, data_bytes, logits_bytes;
  // The trajectory region's size: (steps - 1) slots of params_bytes each,
  // then the loss head's record (head_record_shape) (README, Verification); 0
  // where nothing is recorded (CUDA, for now; a run of one step) and for
  // ranks past 0.
  uint64_t trajectory_bytes;
  // 1: the region ends with the layers' record (layer_record_shape) after the
  // loss head's; 0: it does not (where the device's limits do not read it).
  int32_t record_layers;
  // This runner's rank among world_size (1: the one-rank contract) and how
  // long it may wait for the others to meet.
  int32_t rank, world_size;
  int64_t rendezvous_timeout_ms;
};
static_assert(std::is_trivially_copyable<Init>::value, "Init travels as raw bytes");

struct Warmup {
  int64_t steps;
};

struct Done {
  int64_t total_tokens;
  double final_loss;
  int64_t peak_memory_bytes;  // the runner's own account: device peak on CUDA, max RSS on the CPU
};

enum class ErrorKind : uint32_t { kException = 1, kOutOfMemory = 2, kApiVersion = 3, kPluginLoad = 4, kLogits = 5 };

struct Error {
  uint32_t kind;
  char text[500];
};

// Sends one message, its payload the type's struct (none for READY, WARM,
// GO); false if the peer is gone.
bool send_msg(int fd, Type type, const void* payload = nullptr);
// Receives one message into `payload` of exactly `size` bytes for `want`.
// Returns the type received, or throws ProtocolError on anything malformed.
// Waits at most timeout_ms (< 0: forever); returns 0 on timeout.
struct ProtocolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Packet {
  Type type;
  union Body {
    Body() {}  // filled by recv_msg; Init's config has default member values
    Init init;
    Warmup warmup;
    Done done;
    Error error;
  } body;
};
// Returns false on timeout or end of stream (`eof` tells which).
bool recv_msg(int fd, int timeout_ms, Packet* out, bool* eof);

// Parameter memory layout: every parameter of parameter_specs at an offset
// aligned to 256 bytes. Both sides derive it from the config.
struct ParamLayout {
  std::vector<ParamSpec> specs;
  std::vector<size_t> offsets;
  size_t bytes = 0;
};
ParamLayout param_layout(const Qwen2Config& cfg, torch::Dtype dtype);

// Allocator handing out views of `region` at the layout's offsets.
ParamAllocator region_allocator(const SharedRegion& region, const ParamLayout& layout, torch::Dtype dtype);

// The loss head's record (train_api.h, version 5), after the trajectory's
// parameter slots in its region: bf16 [2, steps, rows, seq_len, hidden], the
// inputs and then their gradients, `rows` the batch's rows (every rank's;
// each rank writes its own contiguous share).
std::vector<int64_t> head_record_shape(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps);
uint64_t head_record_bytes(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps);
// The layers' record (train_api.h, version 6), after the loss head's: bf16
// [4, layers, steps, rows, seq_len, hidden], every layer's residuals after
// the attention, then MLP outputs, MLP output gradients and MLP input
// gradients, rows as in the loss head's.
std::vector<int64_t> layer_record_shape(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps);
uint64_t layer_record_bytes(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps);
// The trajectory region's size: the parameters' slots, the loss head's record, and the layers' where recorded.
uint64_t trajectory_region_bytes(const Qwen2Config& cfg, uint64_t params_bytes, int64_t rows, int64_t seq_len,
                                 int64_t steps, bool record_layers);

}  // namespace tournament::protocol
