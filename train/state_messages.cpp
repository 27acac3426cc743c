#include "train/state_messages.h"

namespace engine::train {

std::string encode_state_part_head(uint64_t offset, size_t n) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(2);
  net::pack_str(pk, "offset");
  pk.pack_uint64(offset);
  net::pack_str(pk, "data");
  pk.pack_bin((uint32_t)n);
  return b.s;
}

StatePart decode_state_part(const msgpack::object& body) {
  net::as_map(body, "part");
  StatePart p;
  p.offset = net::as_uint(net::need_field(body, "offset"), "offset");
  p.data = net::as_bin(net::need_field(body, "data"), "data");
  return p;
}

std::string encode_state_result(const StateResult& r) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(3);
  net::pack_str(pk, "epoch");
  pk.pack_int64(r.epoch);
  net::pack_str(pk, "size");
  pk.pack_uint64(r.size);
  net::pack_str(pk, "xxh3");
  pk.pack_uint64(r.xxh3);
  return b.s;
}

StateResult decode_state_result(const msgpack::object& body) {
  net::as_map(body, "result");
  StateResult r;
  r.epoch = net::as_int(net::need_field(body, "epoch"), "epoch");
  r.size = net::as_uint(net::need_field(body, "size"), "size");
  r.xxh3 = net::as_uint(net::need_field(body, "xxh3"), "xxh3");
  return r;
}

}  // namespace engine::train
