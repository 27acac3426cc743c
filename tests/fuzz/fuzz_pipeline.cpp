// libFuzzer target: the decoders of SWARM pipeline messages (train/pipeline_messages.h)
// on arbitrary bodies, as a stage peer's handler and a trainer's reply callback get
// them. They must refuse bad input with net::BadMessage, never crash, read out of
// bounds or allocate more than the message's own bytes imply (activations: at most
// max_positions x width values, and only as many as the data bytes carry).
//   first byte % 3:  0 swarm.fwd request   1 swarm.bwd request   2 reply
// Width 8, at most 16 positions per window and 64 in all (the seeds use them).
#include <cstddef>
#include <cstdint>
#include <string>

#include "train/pipeline_messages.h"

using namespace engine;
using namespace engine::train;

namespace {

constexpr int64_t kWidth = 8, kMaxN = 16, kMaxPositions = 64;

msgpack::object_handle reparse(const std::string& body) { return net::unpack_untrusted(body.data(), body.size()); }
msgpack::object_handle reparse(std::string&&) = delete;

// Decoded values re-encode (in the same dtype) to a message that decodes to the same
// values: the codecs are exact on what they produced.
void fuzz_request(const msgpack::object& o, bool backward) {
  StageRequest r = decode_stage_request(o, backward, kWidth, kMaxN, kMaxPositions);
  if (r.x.batch * r.x.n > kMaxPositions || r.x.data.size() != (size_t)(r.x.batch * r.x.n * kWidth)) __builtin_trap();
  const std::string body = encode_stage_request(r, backward, r.x.dtype, kWidth);
  auto oh = reparse(body);
  StageRequest b = decode_stage_request(oh.get(), backward, kWidth, kMaxN, kMaxPositions);
  if (b.run != r.run || b.stage != r.stage || b.epoch != r.epoch || b.micro_batch != r.micro_batch ||
      b.samples != r.samples || b.tokens != r.tokens || b.x.batch != r.x.batch || b.x.n != r.x.n)
    __builtin_trap();
  if (r.x.dtype != ActDType::Q8 && (b.x.data != r.x.data || b.dy.data != r.dy.data)) __builtin_trap();
}

void fuzz_reply(const msgpack::object& o) {
  // The trainer knows what it asked for: [2, 4, width].
  StageReply r = decode_stage_reply(o, 2, 4, kWidth);
  if (r.status == StageStatus::Ok && r.y.data.size() != (size_t)(2 * 4 * kWidth)) __builtin_trap();
  const std::string body = encode_stage_reply(r.status, r.epoch, r.y.data.data(), 2, 4, kWidth, r.y.dtype);
  auto oh = reparse(body);
  StageReply b = decode_stage_reply(oh.get(), 2, 4, kWidth);
  if (b.status != r.status || b.epoch != r.epoch) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const unsigned which = data[0] % 3;
  data++, size--;
  try {
    auto oh = net::unpack_untrusted((const char*)data, size);
    if (which == 2) fuzz_reply(oh.get());
    else fuzz_request(oh.get(), which == 1);
  } catch (const net::BadMessage&) {
  }
  return 0;
}
