#include "protocol.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

namespace tournament::protocol {

namespace {

size_t payload_size(Type t) {
  switch (t) {
    case Type::kInit: return sizeof(Init);
    case Type::kWarmup: return sizeof(Warmup);
    case Type::kDone: return sizeof(Done);
    case Type::kError: return sizeof(Error);
    case Type::kReady:
    case Type::kWarm:
    case Type::kGo: return 0;
  }
  return SIZE_MAX;
}

}  // namespace

bool send_msg(int fd, Type type, const void* payload) {
  const size_t size = payload_size(type);
  TORCH_CHECK(size != SIZE_MAX && (size == 0 || payload), "send_msg: no payload for message type ",
              static_cast<uint32_t>(type));
  char buf[sizeof(Header) + sizeof(Packet)];
  Header h{kMagic, static_cast<uint32_t>(type)};
  std::memcpy(buf, &h, sizeof h);
  if (size) std::memcpy(buf + sizeof h, payload, size);
  for (;;) {
    ssize_t n = ::send(fd, buf, sizeof h + size, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof h + size)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

bool recv_msg(int fd, int timeout_ms, Packet* out, bool* eof) {
  *eof = false;
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return false;  // timeout
    break;
  }
  char buf[sizeof(Header) + sizeof(Packet) + 1];
  ssize_t n;
  do {
    n = ::recv(fd, buf, sizeof buf, MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
    *eof = true;
    return false;
  }
  if (n < 0) throw ProtocolError(std::string("control channel: ") + std::strerror(errno));
  if (static_cast<size_t>(n) < sizeof(Header)) throw ProtocolError("a packet shorter than a header");
  Header h;
  std::memcpy(&h, buf, sizeof h);
  if (h.magic != kMagic) throw ProtocolError("a packet with a bad magic number");
  const auto type = static_cast<Type>(h.type);
  const size_t want = payload_size(type);
  if (want == SIZE_MAX) throw ProtocolError("a packet of unknown type " + std::to_string(h.type));
  if (static_cast<size_t>(n) != sizeof h + want) throw ProtocolError("a packet of the wrong size for its type");
  out->type = type;
  if (want) std::memcpy(&out->body, buf + sizeof h, want);
  return true;
}

ParamLayout param_layout(const Qwen2Config& cfg, torch::Dtype dtype) {
  ParamLayout l;
  l.specs = parameter_specs(cfg);
  size_t off = 0;
  const size_t item = c10::elementSize(dtype);
  for (const auto& s : l.specs) {
    off = (off + 255) / 256 * 256;
    l.offsets.push_back(off);
    off += static_cast<size_t>(s.numel()) * item;
  }
  l.bytes = off;
  return l;
}

std::vector<int64_t> head_record_shape(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps) {
  return {2, steps, rows, seq_len, cfg.hidden_size};
}

uint64_t head_record_bytes(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps) {
  uint64_t n = c10::elementSize(torch::kBFloat16);
  for (auto d : head_record_shape(cfg, rows, seq_len, steps)) n *= static_cast<uint64_t>(d);
  return n;
}

std::vector<int64_t> layer_record_shape(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps) {
  return {4, cfg.num_hidden_layers, steps, rows, seq_len, cfg.hidden_size};
}

uint64_t layer_record_bytes(const Qwen2Config& cfg, int64_t rows, int64_t seq_len, int64_t steps) {
  uint64_t n = c10::elementSize(torch::kBFloat16);
  for (auto d : layer_record_shape(cfg, rows, seq_len, steps)) n *= static_cast<uint64_t>(d);
  return n;
}

uint64_t trajectory_region_bytes(const Qwen2Config& cfg, uint64_t params_bytes, int64_t rows, int64_t seq_len,
                                 int64_t steps, bool record_layers) {
  return (steps - 1) * params_bytes + head_record_bytes(cfg, rows, seq_len, steps) +
         (record_layers ? layer_record_bytes(cfg, rows, seq_len, steps) : 0);
}

ParamAllocator region_allocator(const SharedRegion& region, const ParamLayout& layout, torch::Dtype dtype) {
  auto index = std::make_shared<std::unordered_map<std::string, size_t>>();
  for (size_t i = 0; i < layout.specs.size(); ++i) (*index)[layout.specs[i].name] = i;
  return [&region, &layout, dtype, index](const std::string& name, at::IntArrayRef shape) {
    auto it = index->find(name);
    TORCH_CHECK(it != index->end(), "parameter layout has no ", name);
    TORCH_CHECK(shape.vec() == layout.specs[it->second].shape, "parameter layout: shape mismatch for ", name);
    return region.view(layout.offsets[it->second], shape, dtype);
  };
}

}  // namespace tournament::protocol
