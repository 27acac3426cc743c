// libFuzzer target: every decoder of collaborative training's untrusted
// messages, on arbitrary bodies. They must refuse bad input with their
// documented exception (net::BadMessage for msgpack messages, engine::Error for
// the training state), never crash, read out of bounds, throw anything else, or
// allocate more than the data they were given implies. One target for all of
// them (CI's time is per target): the first byte picks the decoder, the rest is
// the message as the rpc hands it to a handler or the DHT to a reader.
//   first byte % 11:
//    0 avg.part                 train/avg_messages.h
//    1 avg.result request
//    2 avg.result reply
//    3 progress record          train/progress_tracker.h (decode_progress)
//    4 two run configs          same_run_config(first half, second half), raw bytes
//    5 group announcement       train/match_messages.h
//    6 avg.join request
//    7 avg.join reply (group)   as the member whose id is 20 bytes of 0x01
//    8 train.state part         train/state_messages.h
//    9 train.state result
//   10 training state           train/pretrain.h (deserialize_state), raw bytes
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "train/avg_messages.h"
#include "train/match_messages.h"
#include "train/pretrain.h"
#include "train/progress_tracker.h"
#include "train/state_messages.h"

using namespace engine;
using namespace engine::train;

namespace {

// The handle references the body's bytes: keep the body alive (no temporaries).
msgpack::object_handle reparse(const std::string& body) { return net::unpack_untrusted(body.data(), body.size()); }
msgpack::object_handle reparse(std::string&&) = delete;

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
  auto oh = reparse(body);
  AvgPart b = decode_avg_part(oh.get());
  if (b.round != m.round || b.part != m.part || b.chunk != m.chunk || b.offset != m.offset || b.n != m.n ||
      b.weight != m.weight || b.dtype != m.dtype || b.data != m.data)
    __builtin_trap();
}

void fuzz_result_request(const msgpack::object& o) {
  AvgResultRequest q = decode_avg_result_request(o);
  std::string body = encode_avg_result_request(q);
  auto oh = reparse(body);
  AvgResultRequest b = decode_avg_result_request(oh.get());
  if (b.round != q.round || b.part != q.part || b.chunk != q.chunk) __builtin_trap();
}

void fuzz_result_reply(const msgpack::object& o) {
  AvgResultReply r = decode_avg_result_reply(o);
  use_values(r.dtype, r.n, r.data);
}

void fuzz_progress(const msgpack::object& o) {
  PeerProgress p = decode_progress(o);
  const std::string body = encode_progress(p);
  auto oh = reparse(body);
  PeerProgress b = decode_progress(oh.get());
  if (b.epoch != p.epoch || b.samples != p.samples || b.samples_per_s != p.samples_per_s || b.time != p.time ||
      b.addr != p.addr || b.bandwidth != p.bandwidth || b.client_mode != p.client_mode ||
      b.params_xxh3 != p.params_xxh3)
    __builtin_trap();
}

// Raw bytes (the DHT's values, not yet decoded): a config equals itself when it
// decodes at all, and the comparison is symmetric.
void fuzz_run_config(const uint8_t* data, size_t size) {
  const std::string a((const char*)data, size / 2), b((const char*)data + size / 2, size - size / 2);
  const bool ab = same_run_config(a, b), ba = same_run_config(b, a);
  if (ab != ba) __builtin_trap();
  if (ab && !same_run_config(a, a)) __builtin_trap();
  if (net::msgpack_well_formed(a.data(), a.size()) && !same_run_config(a, a)) __builtin_trap();
}

bool same_member(const GroupMember& a, const GroupMember& b) {
  return a.id == b.id && a.addr == b.addr && a.bandwidth == b.bandwidth && a.client_mode == b.client_mode &&
         a.weight == b.weight;
}

void fuzz_announcement(const msgpack::object& o) {
  net::NodeId id;
  id.b.fill(0x02);
  GroupMember m = decode_announcement(id, o);
  if (m.addr.size() > kMaxMemberAddrBytes || !(m.bandwidth > 0)) __builtin_trap();
  const std::string body = encode_announcement(m, 1.0);
  auto oh = reparse(body);
  if (!same_member(decode_announcement(id, oh.get()), m)) __builtin_trap();
}

void fuzz_join(const msgpack::object& o) {
  JoinRequest q = decode_join(o);
  const std::string body = encode_join(q.run, q.epoch, q.member, q.member.weight);
  auto oh = reparse(body);
  JoinRequest b = decode_join(oh.get());
  if (b.run != q.run || b.epoch != q.epoch || !same_member(b.member, q.member)) __builtin_trap();
}

void fuzz_group(const msgpack::object& o) {
  net::NodeId me;
  me.b.fill(0x01);
  RoundSpec s = decode_group(o, me);
  if (s.my_index < 0 || (size_t)s.my_index >= s.members.size() || s.members[s.my_index].id != me) __builtin_trap();
  const std::string body = encode_group(s);
  auto oh = reparse(body);
  RoundSpec b = decode_group(oh.get(), me);
  if (b.round_id != s.round_id || b.my_index != s.my_index || b.members.size() != s.members.size()) __builtin_trap();
  for (size_t i = 0; i < s.members.size(); i++)
    if (!same_member(b.members[i], s.members[i])) __builtin_trap();
}

void fuzz_state_part(const msgpack::object& o) {
  StatePart p = decode_state_part(o);
  std::string body = encode_state_part_head(p.offset, p.data.size());
  body.append(p.data);
  auto oh = reparse(body);
  StatePart b = decode_state_part(oh.get());
  if (b.offset != p.offset || b.data != p.data) __builtin_trap();
}

void fuzz_state_result(const msgpack::object& o) {
  StateResult r = decode_state_result(o);
  const std::string body = encode_state_result(r);
  auto oh = reparse(body);
  StateResult b = decode_state_result(oh.get());
  if (b.epoch != r.epoch || b.size != r.size || b.xxh3 != r.xxh3) __builtin_trap();
}

// A training state: what it holds is bounded by the bytes given (params, m and v:
// 12 bytes a parameter), and it serializes to a state that reads back the same.
void fuzz_state(const uint8_t* data, size_t size) {
  TrainState s;
  try {
    s = deserialize_state(std::string_view((const char*)data, size));
  } catch (const Error&) {
    return;
  }
  const size_t n = s.params.data.size();
  if (n * 12 > size || s.opt.m.size() != n || s.opt.v.size() != n) __builtin_trap();
  // A version-2 state (no expert counts) is written back as version 3: 16 bytes more.
  uint32_t version = 0;
  std::memcpy(&version, data + 8, sizeof version);  // after the 8-byte magic, which parsed
  const std::string again = serialize_state(s);
  if (again.size() != size + (version == 2 ? 16 : 0)) __builtin_trap();
  if (serialize_state(deserialize_state(again)) != again) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const unsigned which = data[0] % 11;
  data++, size--;
  if (which == 4) return fuzz_run_config(data, size), 0;
  if (which == 10) return fuzz_state(data, size), 0;
  try {
    auto oh = net::unpack_untrusted((const char*)data, size);
    switch (which) {
      case 0: fuzz_part(oh.get()); break;
      case 1: fuzz_result_request(oh.get()); break;
      case 2: fuzz_result_reply(oh.get()); break;
      case 3: fuzz_progress(oh.get()); break;
      case 5: fuzz_announcement(oh.get()); break;
      case 6: fuzz_join(oh.get()); break;
      case 7: fuzz_group(oh.get()); break;
      case 8: fuzz_state_part(oh.get()); break;
      default: fuzz_state_result(oh.get()); break;
    }
  } catch (const net::BadMessage&) {
  }
  return 0;
}
