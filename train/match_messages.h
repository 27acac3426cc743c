// Matchmaking's wire forms (docs/protocol.md, "Collaborative training:
// coordination"), shared by train/matchmaking.cpp and the fuzz target:
//   announcement  "<run>.group.<epoch>" / "@<id hex>" -> {addr, bandwidth, client, weight}
//   avg.join      request {run, epoch, member, weight}
//                 reply   {round, members}
//   member        [id bin(20), addr str, bandwidth float > 0, client bool, weight float >= 0]
// Every value comes from another peer: decoders check types and ranges and
// throw net::BadMessage; nothing else.
#pragma once
#include <cstdint>
#include <string>

#include "net/msg.h"
#include "net/node_id.h"
#include "train/butterfly.h"  // GroupMember, RoundSpec

namespace engine::train {

constexpr size_t kMaxMemberAddrBytes = 256;
constexpr size_t kMaxGroupRoundIdBytes = 512;
constexpr uint32_t kMaxMembersOnWire = 4096;

// The announcement of `me` (its addr, bandwidth, client mode) with `weight`.
std::string encode_announcement(const GroupMember& me, double weight);
// The candidate `id` (the subkey's owner) announced: its weight is not read (0);
// an empty addr means client mode.
GroupMember decode_announcement(const net::NodeId& id, const msgpack::object& o);

// avg.join request. decode_join returns the member with its weight taken from the
// top-level "weight" field (the one inside the member array is checked, not kept).
struct JoinRequest {
  std::string run;
  int64_t epoch = 0;
  GroupMember member;
};
std::string encode_join(const std::string& run, int64_t epoch, const GroupMember& me, double weight);
JoinRequest decode_join(const msgpack::object& args);

// avg.join reply: the group. decode_group also checks the ids strictly increase
// and that `me` is in it (spec.my_index).
std::string encode_group(const RoundSpec& spec);
RoundSpec decode_group(const msgpack::object& o, const net::NodeId& me);

}  // namespace engine::train
