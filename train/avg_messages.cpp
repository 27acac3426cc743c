#include "train/avg_messages.h"

#include <cmath>

namespace engine::train {

using net::BadMessage;
using net::need_field;

namespace {

std::string_view round_field(const msgpack::object& body) {
  std::string_view r = net::as_str(need_field(body, "round"), "round");
  if (r.empty() || r.size() > kMaxRoundIdBytes) throw BadMessage("round id must be 1.." + std::to_string(kMaxRoundIdBytes) + " bytes");
  return r;
}

uint32_t part_field(const msgpack::object& body) {
  uint64_t p = net::as_uint(need_field(body, "part"), "part");
  if (p >= kMaxGroupParts) throw BadMessage("part index out of range");
  return (uint32_t)p;
}

uint64_t chunk_field(const msgpack::object& body) {
  uint64_t c = net::as_uint(need_field(body, "chunk"), "chunk");
  if (c >= (uint64_t)kMaxAvgValues) throw BadMessage("chunk index out of range");
  return c;
}

WireDType dtype_field(const msgpack::object& body) {
  WireDType t;
  std::string_view s = net::as_str(need_field(body, "dtype"), "dtype");
  if (!wire_dtype_from_name(std::string(s), &t)) throw BadMessage("unknown wire dtype '" + std::string(s.substr(0, 16)) + "'");
  return t;
}

// offset, n and data, checked against each other.
void span_fields(const msgpack::object& body, WireDType t, int64_t* offset, int64_t* n, std::string_view* data) {
  uint64_t off = net::as_uint(need_field(body, "offset"), "offset");
  uint64_t cnt = net::as_uint(need_field(body, "n"), "n");
  if (cnt == 0 || off >= (uint64_t)kMaxAvgValues || cnt > (uint64_t)kMaxAvgValues - off)
    throw BadMessage("offset/n out of range");
  *data = net::as_bin(need_field(body, "data"), "data");
  if (data->size() != wire_bytes(t, (int64_t)cnt))
    throw BadMessage("data has " + std::to_string(data->size()) + " bytes, not " + std::to_string(cnt) + " " +
                     wire_dtype_name(t) + " values");
  *offset = (int64_t)off;
  *n = (int64_t)cnt;
}

void pack_span(net::Packer& pk, int64_t offset, int64_t n, WireDType t, std::string_view data) {
  net::pack_str(pk, "offset");
  pk.pack_uint64((uint64_t)offset);
  net::pack_str(pk, "n");
  pk.pack_uint64((uint64_t)n);
  net::pack_str(pk, "dtype");
  net::pack_str(pk, wire_dtype_name(t));
  net::pack_str(pk, "data");
  net::pack_bin(pk, data);
}

}  // namespace

std::string encode_avg_part(const AvgPart& m) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(8);
  net::pack_str(pk, "round");
  net::pack_str(pk, m.round);
  net::pack_str(pk, "part");
  pk.pack_uint32(m.part);
  net::pack_str(pk, "chunk");
  pk.pack_uint64(m.chunk);
  net::pack_str(pk, "weight");
  pk.pack_double(m.weight);
  pack_span(pk, m.offset, m.n, m.dtype, m.data);
  return std::move(b.s);
}

AvgPart decode_avg_part(const msgpack::object& body) {
  AvgPart m;
  m.round = round_field(body);
  m.part = part_field(body);
  m.chunk = chunk_field(body);
  m.weight = net::as_double(need_field(body, "weight"), "weight");
  if (!(m.weight > 0) || !std::isfinite(m.weight)) throw BadMessage("weight must be positive and finite");
  m.dtype = dtype_field(body);
  span_fields(body, m.dtype, &m.offset, &m.n, &m.data);
  return m;
}

std::string encode_avg_result_request(const AvgResultRequest& m) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(3);
  net::pack_str(pk, "round");
  net::pack_str(pk, m.round);
  net::pack_str(pk, "part");
  pk.pack_uint32(m.part);
  net::pack_str(pk, "chunk");
  pk.pack_uint64(m.chunk);
  return std::move(b.s);
}

AvgResultRequest decode_avg_result_request(const msgpack::object& body) {
  AvgResultRequest m;
  m.round = round_field(body);
  m.part = part_field(body);
  m.chunk = chunk_field(body);
  return m;
}

std::string encode_avg_result_reply(const AvgResultReply& m) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(4);
  pack_span(pk, m.offset, m.n, m.dtype, m.data);
  return std::move(b.s);
}

AvgResultReply decode_avg_result_reply(const msgpack::object& body) {
  AvgResultReply m;
  m.dtype = dtype_field(body);
  span_fields(body, m.dtype, &m.offset, &m.n, &m.data);
  return m;
}

}  // namespace engine::train
