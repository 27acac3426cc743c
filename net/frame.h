// Framing: every message on a connection is one frame.
//
//   offset size  field
//   0      4     magic "ENGN"
//   4      2     protocol version, big-endian (kProtocolVersion)
//   6      2     flags, big-endian (must be 0 in version 1)
//   8      4     body length in bytes, big-endian
//   12     8     XXH3-64 of the body (seed 0), big-endian
//   20     n     body: one msgpack object (see net/envelope.h)
//
// The header is checked before the body is buffered, so a peer that announces
// an oversized frame is cut off before we allocate for it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/handshake.h"

namespace engine::net {

constexpr uint8_t kFrameMagic[4] = {'E', 'N', 'G', 'N'};
constexpr uint16_t kProtocolVersion = 2;  // 2: identity proof (auth) and private swarms
constexpr size_t kFrameHeaderSize = 20;
// Default hard limit on a frame body; large tensors are streamed in parts below it.
constexpr size_t kDefaultMaxFrame = 8u << 20;

enum class FrameError {
  kNone = 0,
  kBadMagic,
  kBadVersion,
  kBadFlags,
  kOversized,
  kBadChecksum,
  kTruncated,
  kBadSeal,  // a sealed record failed to authenticate (net/secure_frames.h)
};
const char* frame_error_name(FrameError e);

uint64_t frame_checksum(const void* a, size_t na, const void* b = nullptr, size_t nb = 0);

// Writes the 20-byte header for a body made of two pieces (prefix then payload),
// so large payloads are checksummed and sent without first being copied together.
void write_frame_header(uint8_t out[kFrameHeaderSize], std::string_view prefix, std::string_view payload = {},
                        std::string_view tail = {});
// Header + body in one string (tests, small control messages).
std::string encode_frame(std::string_view body);

struct FrameHeader {
  uint16_t version = 0;
  uint16_t flags = 0;
  uint32_t length = 0;
  uint64_t checksum = 0;
};
// Validates magic, version, flags and length against max_body.
FrameError parse_frame_header(const uint8_t* p, size_t max_body, FrameHeader* h);

// Decodes one complete frame at the start of [data, data+n).
// kTruncated when n is short of a whole frame.
FrameError decode_frame(const uint8_t* data, size_t n, size_t max_body, std::string_view* body, size_t* consumed);

// Incremental decoder for a byte stream. The socket reads straight into
// write_space(); next() hands out whole frame bodies (valid until the next
// call to write_space/next). After an error the reader stays failed.
class FrameReader {
 public:
  explicit FrameReader(size_t max_body = kDefaultMaxFrame) : max_body_(max_body) {}

  // Room for at least `want` more bytes (more once a large frame's size is known).
  char* write_space(size_t want, size_t* got);
  void commit(size_t n) { end_ += n; }
  // Convenience for tests/fuzzing: copy bytes in.
  void feed(const void* p, size_t n);

  enum Result { kNeedMore, kFrame, kError };
  Result next(std::string_view* body);
  // The next n raw bytes (the swarm-key handshake, before any frame), or
  // nullptr until that many have arrived; valid until the next call.
  const uint8_t* take_raw(size_t n);
  // From now on the stream is sealed records (net/secure_frames.h) opened with key.
  void set_opener(const ChannelKey& key);
  FrameError error() const { return error_; }
  size_t buffered() const { return end_ - start_; }
  // Body length the current frame's (checked) header announced while the body
  // is still incomplete; 0 before its header is in.
  size_t announced() const { return need_ > kFrameHeaderSize ? need_ - kFrameHeaderSize : 0; }
  // Releases a large idle buffer (called for connections that went quiet).
  void shrink();

 private:
  size_t max_body_;
  std::unique_ptr<char[]> buf_;  // not zero-filled: every byte is read before use
  size_t cap_ = 0;
  size_t start_ = 0, end_ = 0;
  size_t need_ = kFrameHeaderSize;  // bytes the current frame needs in total
  FrameError error_ = FrameError::kNone;
  bool sealed_ = false;
  ChannelKey key_{};
  uint64_t seq_ = 0;  // records opened so far (the next one's nonce)
  Result next_sealed(std::string_view* body);
};

}  // namespace engine::net
