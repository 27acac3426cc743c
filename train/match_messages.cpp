#include "train/match_messages.h"

#include <cmath>

namespace engine::train {

using net::BadMessage;
using net::NodeId;

namespace {

double positive_bandwidth(const msgpack::object& o) {
  double bw = net::as_double(o, "bandwidth");
  if (!(bw > 0) || !std::isfinite(bw)) throw BadMessage("bandwidth must be positive and finite");
  return bw;
}

std::string bounded_addr(const msgpack::object& o) {
  std::string_view a = net::as_str(o, "addr");
  if (a.size() > kMaxMemberAddrBytes) throw BadMessage("addr too long");
  return std::string(a);
}

double nonnegative_weight(const msgpack::object& o) {
  const double w = net::as_double(o, "weight");
  if (!(w >= 0) || !std::isfinite(w)) throw BadMessage("weight must be finite and not negative");
  return w;
}

void pack_member(net::Packer& pk, const GroupMember& m) {
  pk.pack_array(5);
  net::pack_bin(pk, m.id.bytes());
  net::pack_str(pk, m.addr);
  pk.pack_double(m.bandwidth);
  m.client_mode ? pk.pack_true() : pk.pack_false();
  pk.pack_double(m.weight);
}

GroupMember unpack_member(const msgpack::object& o) {
  const msgpack::object& a = net::as_array(o, "member");
  if (a.via.array.size != 5) throw BadMessage("member must have 5 fields");
  GroupMember m;
  if (!NodeId::from_bytes(net::as_bin(a.via.array.ptr[0], "member id"), &m.id)) throw BadMessage("bad member id");
  m.addr = bounded_addr(a.via.array.ptr[1]);
  m.bandwidth = positive_bandwidth(a.via.array.ptr[2]);
  m.client_mode = net::as_bool(a.via.array.ptr[3], "client");
  m.weight = nonnegative_weight(a.via.array.ptr[4]);
  return m;
}

}  // namespace

// ---- announcement -------------------------------------------------------------------

std::string encode_announcement(const GroupMember& me, double weight) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(4);
  net::pack_str(pk, "addr");
  net::pack_str(pk, me.addr);
  net::pack_str(pk, "bandwidth");
  pk.pack_double(me.bandwidth);
  net::pack_str(pk, "client");
  me.client_mode ? pk.pack_true() : pk.pack_false();
  net::pack_str(pk, "weight");
  pk.pack_double(weight);
  return b.s;
}

GroupMember decode_announcement(const NodeId& id, const msgpack::object& o) {
  net::as_map(o, "announcement");
  GroupMember m;
  m.id = id;
  m.addr = bounded_addr(net::need_field(o, "addr"));
  m.bandwidth = positive_bandwidth(net::need_field(o, "bandwidth"));
  m.client_mode = net::as_bool(net::need_field(o, "client"), "client") || m.addr.empty();
  return m;
}

// ---- avg.join ----------------------------------------------------------------------

std::string encode_join(const std::string& run, int64_t epoch, const GroupMember& me, double weight) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(4);
  net::pack_str(pk, "run");
  net::pack_str(pk, run);
  net::pack_str(pk, "epoch");
  pk.pack_int64(epoch);
  net::pack_str(pk, "member");
  pack_member(pk, me);
  net::pack_str(pk, "weight");
  pk.pack_double(weight);
  return b.s;
}

JoinRequest decode_join(const msgpack::object& args) {
  net::as_map(args, "args");
  JoinRequest q;
  q.run = std::string(net::as_str(net::need_field(args, "run"), "run"));
  q.epoch = net::as_int(net::need_field(args, "epoch"), "epoch");
  q.member = unpack_member(net::need_field(args, "member"));
  q.member.weight = nonnegative_weight(net::need_field(args, "weight"));
  return q;
}

std::string encode_group(const RoundSpec& spec) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(2);
  net::pack_str(pk, "round");
  net::pack_str(pk, spec.round_id);
  net::pack_str(pk, "members");
  pk.pack_array((uint32_t)spec.members.size());
  for (auto& m : spec.members) pack_member(pk, m);
  return b.s;
}

RoundSpec decode_group(const msgpack::object& o, const NodeId& me) {
  net::as_map(o, "group");
  RoundSpec spec;
  spec.round_id = std::string(net::as_str(net::need_field(o, "round"), "round"));
  if (spec.round_id.empty() || spec.round_id.size() > kMaxGroupRoundIdBytes) throw BadMessage("bad round id");
  const msgpack::object& arr = net::as_array(net::need_field(o, "members"), "members");
  if (arr.via.array.size > kMaxMembersOnWire) throw BadMessage("too many members");
  for (uint32_t i = 0; i < arr.via.array.size; i++) {
    spec.members.push_back(unpack_member(arr.via.array.ptr[i]));
    if (i > 0 && !(spec.members[i - 1].id < spec.members[i].id)) throw BadMessage("members not sorted by id");
    if (spec.members.back().id == me) spec.my_index = (int)i;
  }
  if (spec.my_index < 0) throw BadMessage("the group does not include us");
  return spec;
}

}  // namespace engine::train
