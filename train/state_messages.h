// train.state's wire forms (docs/protocol.md, "train.state"), shared by
// train/state_transfer.cpp and the fuzz target:
//   part    {offset: uint, data: bin}           streamed, in order from offset 0
//   result  {epoch: int, size: uint, xxh3: uint} the final reply
// Decoders check types only (order, size and checksum are the download's to
// check) and throw net::BadMessage. A part's data references the body.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/msg.h"

namespace engine::train {

struct StatePart {
  uint64_t offset = 0;
  std::string_view data;
};

struct StateResult {
  int64_t epoch = 0;
  uint64_t size = 0;
  uint64_t xxh3 = 0;
};

// Everything of a part except its n data bytes, which the sender appends
// without a copy (Responder::send_part_ref).
std::string encode_state_part_head(uint64_t offset, size_t n);
StatePart decode_state_part(const msgpack::object& body);
std::string encode_state_result(const StateResult& r);
StateResult decode_state_result(const msgpack::object& body);

}  // namespace engine::train
