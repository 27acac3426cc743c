// The averager's two RPCs as msgpack bodies (docs/protocol.md, "Averaging"):
//   avg.part   {round, part, chunk, offset, n, weight, dtype, data}   sender -> reducer
//   avg.result {round, part, chunk}                                  member -> reducer
//              reply {offset, n, dtype, data}
// Decoders check everything that can be checked without knowing the round
// (types, ranges, data size = n values of dtype) and throw net::BadMessage; the
// round then checks membership, offsets and values. Views reference the body.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "net/msg.h"
#include "train/wire_dtype.h"

namespace engine::train {

constexpr size_t kMaxRoundIdBytes = 128;
constexpr uint64_t kMaxGroupParts = 1u << 16;
constexpr int64_t kMaxAvgValues = int64_t(1) << 40;  // offsets and lengths of a vector

struct AvgPart {
  std::string_view round;
  uint32_t part = 0;
  uint64_t chunk = 0;
  int64_t offset = 0, n = 0;  // values [offset, offset + n) of the whole vector
  double weight = 0;          // > 0, finite
  WireDType dtype = WireDType::F32;
  std::string_view data;      // wire_bytes(dtype, n) bytes
};

struct AvgResultRequest {
  std::string_view round;
  uint32_t part = 0;
  uint64_t chunk = 0;
};

struct AvgResultReply {
  int64_t offset = 0, n = 0;
  WireDType dtype = WireDType::F32;
  std::string_view data;
};

std::string encode_avg_part(const AvgPart& m);
AvgPart decode_avg_part(const msgpack::object& body);
std::string encode_avg_result_request(const AvgResultRequest& m);
AvgResultRequest decode_avg_result_request(const msgpack::object& body);
std::string encode_avg_result_reply(const AvgResultReply& m);
AvgResultReply decode_avg_result_reply(const msgpack::object& body);

}  // namespace engine::train
