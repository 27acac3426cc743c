#include "train/pipeline_messages.h"

#include <cmath>
#include <cstring>

#include "train/wire_dtype.h"

namespace engine::train {

using net::BadMessage;

namespace {

const struct {
  const char* name;
  ActDType t;
} kActNames[] = {{"f32", ActDType::F32}, {"f16", ActDType::F16}, {"bf16", ActDType::BF16}, {"int8", ActDType::Q8}};

// Finite values only: a NaN or an infinity from one peer would poison the
// gradients of every stage behind it.
void need_finite(const std::vector<float>& v, const char* what) {
  for (float x : v)
    if (!std::isfinite(x)) throw BadMessage(std::string(what) + " holds a non-finite value");
}

}  // namespace

bool act_dtype_from_name(const std::string& s, ActDType* out) {
  for (auto& n : kActNames)
    if (s == n.name) return *out = n.t, true;
  return false;
}

const char* act_dtype_name(ActDType t) {
  for (auto& n : kActNames)
    if (t == n.t) return n.name;
  return "?";
}

size_t act_bytes(ActDType t, int64_t count) {
  switch (t) {
    case ActDType::F32: return (size_t)count * 4;
    case ActDType::F16:
    case ActDType::BF16: return (size_t)count * 2;
    case ActDType::Q8: return wire_bytes(WireDType::Q8, count);
  }
  return 0;
}

void pack_acts(net::Packer& pk, ActDType t, const float* x, int64_t batch, int64_t n, int64_t d) {
  const int64_t count = batch * n * d;
  std::string data;
  switch (t) {
    case ActDType::F32: data.assign((const char*)x, (size_t)count * 4); break;
    case ActDType::F16:
    case ActDType::BF16: {
      data.resize((size_t)count * 2);
      uint16_t* h = (uint16_t*)data.data();
      for (int64_t i = 0; i < count; i++) h[i] = t == ActDType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
      break;
    }
    case ActDType::Q8: data = wire_encode(WireDType::Q8, x, count); break;
  }
  pk.pack_map(3);
  net::pack_str(pk, "dtype");
  net::pack_str(pk, act_dtype_name(t));
  net::pack_str(pk, "shape");
  pk.pack_array(3);
  pk.pack_int64(batch), pk.pack_int64(n), pk.pack_int64(d);
  net::pack_str(pk, "data");
  net::pack_bin(pk, data);
}

Acts unpack_acts(const msgpack::object& o, int64_t width, int64_t max_n, int64_t max_positions) {
  const msgpack::object& m = net::as_map(o, "activations");
  Acts a;
  const std::string name(net::as_str(net::need_field(m, "dtype"), "dtype"));
  if (!act_dtype_from_name(name, &a.dtype)) throw BadMessage("activations: unknown dtype '" + name + "'");
  const msgpack::object& shape = net::as_array(net::need_field(m, "shape"), "shape");
  if (shape.via.array.size != 3) throw BadMessage("activations must have shape [batch, n, width]");
  const int64_t B = net::as_int(shape.via.array.ptr[0], "shape"), n = net::as_int(shape.via.array.ptr[1], "shape"),
                d = net::as_int(shape.via.array.ptr[2], "shape");
  if (d != width) throw BadMessage("activations of width " + std::to_string(d) + ", the model's is " + std::to_string(width));
  if (n < 1 || n > max_n) throw BadMessage("activations of " + std::to_string(n) + " positions per window; allowed 1.." + std::to_string(max_n));
  if (B < 1 || B > max_positions / n)
    throw BadMessage("a batch of " + std::to_string(B) + " x " + std::to_string(n) + " positions; allowed " +
                     std::to_string(max_positions) + " in all");
  a.batch = B, a.n = n;
  const int64_t count = B * n * d;
  const std::string_view data = net::as_bin(net::need_field(m, "data"), "data");
  if (data.size() != act_bytes(a.dtype, count))
    throw BadMessage("activations: " + std::to_string(data.size()) + " bytes for " + std::to_string(count) + " " +
                     name + " values");
  a.data.resize((size_t)count);
  switch (a.dtype) {
    case ActDType::F32: std::memcpy(a.data.data(), data.data(), data.size()); break;
    case ActDType::F16:
    case ActDType::BF16: {
      for (int64_t i = 0; i < count; i++) {
        uint16_t h;
        std::memcpy(&h, data.data() + 2 * i, 2);
        a.data[i] = a.dtype == ActDType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      break;
    }
    case ActDType::Q8: wire_decode(WireDType::Q8, data, a.data.data(), count); break;
  }
  need_finite(a.data, "activations");
  return a;
}

std::string encode_stage_request(const StageRequest& r, bool backward, ActDType t, int64_t d) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(backward ? 8 : 5);
  net::pack_str(pk, "run");
  net::pack_str(pk, r.run);
  net::pack_str(pk, "stage");
  pk.pack_int64(r.stage);
  net::pack_str(pk, "epoch");
  pk.pack_int64(r.epoch);
  net::pack_str(pk, "mb");
  pk.pack_uint64(r.micro_batch);
  net::pack_str(pk, "x");
  pack_acts(pk, t, r.x.data.data(), r.x.batch, r.x.n, d);
  if (backward) {
    net::pack_str(pk, "samples");
    pk.pack_int64(r.samples);
    net::pack_str(pk, "tokens");
    pk.pack_int64(r.tokens);
    net::pack_str(pk, "dy");
    pack_acts(pk, t, r.dy.data.data(), r.dy.batch, r.dy.n, d);
  }
  return b.s;
}

StageRequest decode_stage_request(const msgpack::object& o, bool backward, int64_t width, int64_t max_n,
                                  int64_t max_positions) {
  const msgpack::object& m = net::as_map(o, "request");
  StageRequest r;
  r.run = std::string(net::as_str(net::need_field(m, "run"), "run"));
  r.stage = net::as_int(net::need_field(m, "stage"), "stage");
  r.epoch = net::as_int(net::need_field(m, "epoch"), "epoch");
  r.micro_batch = net::as_uint(net::need_field(m, "mb"), "mb");
  if (r.stage < 0 || r.epoch < 0) throw BadMessage("negative stage or epoch");
  r.x = unpack_acts(net::need_field(m, "x"), width, max_n, max_positions);
  if (backward) {
    r.samples = net::as_int(net::need_field(m, "samples"), "samples");
    r.tokens = net::as_int(net::need_field(m, "tokens"), "tokens");
    if (r.samples < 1 || r.samples > r.x.batch) throw BadMessage("samples must be in [1, batch]");
    if (r.tokens < 0 || r.tokens > r.x.batch * r.x.n) throw BadMessage("tokens must be in [0, batch x n]");
    r.dy = unpack_acts(net::need_field(m, "dy"), width, max_n, max_positions);
    if (r.dy.batch != r.x.batch || r.dy.n != r.x.n) throw BadMessage("dy and x differ in shape");
  }
  return r;
}

const char* stage_status_name(StageStatus s) {
  switch (s) {
    case StageStatus::Ok: return "ok";
    case StageStatus::Stale: return "stale";
    case StageStatus::Wait: return "wait";
    case StageStatus::Moved: return "moved";
  }
  return "?";
}

std::string encode_stage_reply(StageStatus s, int64_t epoch, const float* y, int64_t batch, int64_t n, int64_t d,
                               ActDType t) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(s == StageStatus::Ok ? 3 : 2);
  net::pack_str(pk, "status");
  net::pack_str(pk, stage_status_name(s));
  net::pack_str(pk, "epoch");
  pk.pack_int64(epoch);
  if (s == StageStatus::Ok) {
    net::pack_str(pk, "y");
    pack_acts(pk, t, y, batch, n, d);
  }
  return b.s;
}

StageReply decode_stage_reply(const msgpack::object& o, int64_t batch, int64_t n, int64_t d) {
  const msgpack::object& m = net::as_map(o, "reply");
  StageReply r;
  const std::string_view st = net::as_str(net::need_field(m, "status"), "status");
  if (st == "ok") r.status = StageStatus::Ok;
  else if (st == "stale") r.status = StageStatus::Stale;
  else if (st == "wait") r.status = StageStatus::Wait;
  else if (st == "moved") r.status = StageStatus::Moved;
  else throw BadMessage("unknown status '" + std::string(st) + "'");
  r.epoch = net::as_int(net::need_field(m, "epoch"), "epoch");
  if (r.status == StageStatus::Ok) {
    r.y = unpack_acts(net::need_field(m, "y"), d, n, batch * n);
    if (r.y.batch != batch || r.y.n != n)
      throw BadMessage("a reply of shape [" + std::to_string(r.y.batch) + ", " + std::to_string(r.y.n) +
                       "] for a request of [" + std::to_string(batch) + ", " + std::to_string(n) + "]");
  }
  return r;
}

}  // namespace engine::train
