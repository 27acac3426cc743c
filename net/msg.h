// msgpack helpers: packing into a std::string, strict decoding of untrusted
// bodies, typed field access on maps, and tensors as {dtype, shape, data}.
#pragma once
#include <cstdint>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace engine::net {

// A message that does not have the fields or types its type requires.
struct BadMessage : Error {
  using Error::Error;
};

// Output stream for msgpack::packer that appends to a std::string.
struct Buf {
  std::string s;
  void write(const char* p, size_t n) { s.append(p, n); }
};
using Packer = msgpack::packer<Buf>;

inline void pack_str(Packer& pk, std::string_view s) {
  pk.pack_str((uint32_t)s.size());
  pk.pack_str_body(s.data(), (uint32_t)s.size());
}
inline void pack_bin(Packer& pk, std::string_view s) {
  pk.pack_bin((uint32_t)s.size());
  pk.pack_bin_body(s.data(), (uint32_t)s.size());
}

// Walks msgpack bytes without allocating and checks they form exactly one
// object with nesting depth <= max_depth, where no container claims more
// elements than bytes remain. Only then is it safe to let msgpack-c build
// objects (it allocates a container's slots from its header count).
bool msgpack_well_formed(const char* p, size_t n, int max_depth = 32);

// Decodes one object spanning exactly [p, p+n). str/bin/ext payloads
// reference the input bytes (no copy), so the input must outlive the handle.
// Throws BadMessage.
msgpack::object_handle unpack_untrusted(const char* p, size_t n);

// ---- typed access to map fields (keys are strings) ----
const msgpack::object* find_field(const msgpack::object& map, std::string_view key);
const msgpack::object& need_field(const msgpack::object& map, std::string_view key);
uint64_t as_uint(const msgpack::object& o, std::string_view what);
int64_t as_int(const msgpack::object& o, std::string_view what);
double as_double(const msgpack::object& o, std::string_view what);  // accepts ints too
bool as_bool(const msgpack::object& o, std::string_view what);
std::string_view as_str(const msgpack::object& o, std::string_view what);
std::string_view as_bin(const msgpack::object& o, std::string_view what);
std::string_view as_bytes(const msgpack::object& o, std::string_view what);  // str or bin
const msgpack::object& as_map(const msgpack::object& o, std::string_view what);
const msgpack::object& as_array(const msgpack::object& o, std::string_view what);

// Re-encodes an object (e.g. to keep a value opaque in storage).
std::string pack_object(const msgpack::object& o);
// Human-readable JSON-like rendering (bins as hex, long values elided).
std::string object_to_text(const msgpack::object& o, size_t max_bytes = 4096);

// ---- tensors: {"dtype": "f16", "shape": [..], "data": bin} ----
struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string_view data;  // references the message body
  int64_t numel() const;
};
void pack_tensor(Packer& pk, DType dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes);
// Everything of pack_tensor except the data bytes, which the caller sends
// right after it (Responder::send_part_ref) without copying them.
std::string tensor_head(DType dtype, const std::vector<int64_t>& shape, size_t nbytes);
// Checks dtype is known, shape is non-negative and data size matches.
TensorView unpack_tensor(const msgpack::object& o);

}  // namespace engine::net
