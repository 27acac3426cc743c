// libFuzzer target: the averager's message decoders (train/avg_messages.h) and
// the wire dtype decoder behind them, on arbitrary msgpack bodies. They must
// refuse bad input with BadMessage, never crash, read out of bounds, or allocate
// more than the data they were given implies.
//   first byte % 3: 0 avg.part, 1 avg.result request, 2 avg.result reply;
//   the rest: the body (msgpack), as the rpc hands it to a handler.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "train/avg_messages.h"

using namespace engine;
using namespace engine::train;

namespace {

// What a round does with an accepted message: decode its values, check them,
// and re-encode (the encoding must decode to the same message).
void use_values(WireDType t, int64_t n, std::string_view data) {
  std::vector<float> x((size_t)n);  // n <= data bytes / 1.125: bounded by the input
  wire_decode(t, data, x.data(), n);
  (void)all_finite(x.data(), n);
  std::string again = wire_encode(t, x.data(), n);
  if (again.size() != data.size()) __builtin_trap();
}

void fuzz_part(const msgpack::object& o) {
  AvgPart m = decode_avg_part(o);
  use_values(m.dtype, m.n, m.data);
  std::string body = encode_avg_part(m);
  auto oh = net::unpack_untrusted(body.data(), body.size());
  AvgPart b = decode_avg_part(oh.get());
  if (b.round != m.round || b.part != m.part || b.chunk != m.chunk || b.offset != m.offset || b.n != m.n ||
      b.weight != m.weight || b.dtype != m.dtype || b.data != m.data)
    __builtin_trap();
}

void fuzz_result_request(const msgpack::object& o) {
  AvgResultRequest q = decode_avg_result_request(o);
  std::string body = encode_avg_result_request(q);
  auto oh = net::unpack_untrusted(body.data(), body.size());
  AvgResultRequest b = decode_avg_result_request(oh.get());
  if (b.round != q.round || b.part != q.part || b.chunk != q.chunk) __builtin_trap();
}

void fuzz_result_reply(const msgpack::object& o) {
  AvgResultReply r = decode_avg_result_reply(o);
  use_values(r.dtype, r.n, r.data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    auto oh = net::unpack_untrusted((const char*)data + 1, size - 1);
    switch (data[0] % 3) {
      case 0: fuzz_part(oh.get()); break;
      case 1: fuzz_result_request(oh.get()); break;
      default: fuzz_result_reply(oh.get()); break;
    }
  } catch (const net::BadMessage&) {
  }
  return 0;
}
