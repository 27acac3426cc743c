#include "net/msg.h"

#include <cmath>
#include <cstdio>

namespace engine::net {

static uint64_t be(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

bool msgpack_well_formed(const char* data, size_t n, int max_depth) {
  const uint8_t* p = (const uint8_t*)data;
  size_t i = 0;
  uint64_t outstanding = 1;   // objects still to read, at every level together
  std::vector<uint64_t> open;  // children left in each open container
  while (outstanding) {
    if (i >= n) return false;
    uint8_t b = p[i++];
    uint64_t skip = 0, kids = 0;
    int lenbytes = 0;   // size of a length field that follows the type byte
    int extra = 0;      // fixed bytes after the length field (ext type)
    bool is_map = false, is_array = false;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
    } else if (b <= 0x8f) {
      kids = 2 * (b & 0x0f);
    } else if (b <= 0x9f) {
      kids = b & 0x0f;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      switch (b) {
        case 0xc4: case 0xd9: lenbytes = 1; break;
        case 0xc5: case 0xda: lenbytes = 2; break;
        case 0xc6: case 0xdb: lenbytes = 4; break;
        case 0xc7: lenbytes = 1, extra = 1; break;
        case 0xc8: lenbytes = 2, extra = 1; break;
        case 0xc9: lenbytes = 4, extra = 1; break;
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break;
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: lenbytes = 2, is_array = true; break;
        case 0xdd: lenbytes = 4, is_array = true; break;
        case 0xde: lenbytes = 2, is_map = true; break;
        case 0xdf: lenbytes = 4, is_map = true; break;
        default: return false;  // 0xc1 is never used
      }
    }
    if (lenbytes) {
      if (n - i < (size_t)lenbytes) return false;
      uint64_t len = be(p + i, lenbytes);
      i += lenbytes;
      if (is_array) kids = len;
      else if (is_map) kids = 2 * len;
      else skip = len + extra;
    }
    if (skip > n - i) return false;
    i += skip;
    outstanding--;
    if (!open.empty()) open.back()--;
    if (kids) {
      if ((int)open.size() >= max_depth) return false;
      outstanding += kids;
      if (outstanding > n - i) return false;  // every object needs at least one byte
      open.push_back(kids);
    }
    while (!open.empty() && open.back() == 0) open.pop_back();
  }
  return i == n;
}

static bool reference_everything(msgpack::type::object_type, std::size_t, void*) { return true; }

msgpack::object_handle unpack_untrusted(const char* p, size_t n) {
  if (!msgpack_well_formed(p, n)) throw BadMessage("malformed msgpack body");
  try {
    size_t off = 0;
    msgpack::object_handle oh = msgpack::unpack(p, n, off, reference_everything, nullptr);
    if (off != n) throw BadMessage("trailing bytes after msgpack body");
    return oh;
  } catch (const BadMessage&) {
    throw;
  } catch (const std::exception& e) {
    throw BadMessage(std::string("malformed msgpack body: ") + e.what());
  }
}

static const char* type_name(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER: case msgpack::type::NEGATIVE_INTEGER: return "int";
    case msgpack::type::FLOAT32: case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "?";
}

[[noreturn]] static void wrong_type(const msgpack::object& o, std::string_view what, const char* want) {
  throw BadMessage(std::string(what) + ": expected " + want + ", got " + type_name(o));
}

const msgpack::object* find_field(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; i++) {
    auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key)
      return &kv.val;
  }
  return nullptr;
}

const msgpack::object& need_field(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) wrong_type(map, "message", "map");
  const msgpack::object* f = find_field(map, key);
  if (!f) throw BadMessage("missing field '" + std::string(key) + "'");
  return *f;
}

uint64_t as_uint(const msgpack::object& o, std::string_view what) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) wrong_type(o, what, "unsigned int");
  return o.via.u64;
}

int64_t as_int(const msgpack::object& o, std::string_view what) {
  if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
  if (o.type == msgpack::type::POSITIVE_INTEGER && o.via.u64 <= (uint64_t)INT64_MAX) return (int64_t)o.via.u64;
  wrong_type(o, what, "int64");
}

double as_double(const msgpack::object& o, std::string_view what) {
  double v;
  if (o.type == msgpack::type::FLOAT32 || o.type == msgpack::type::FLOAT64) v = o.via.f64;
  else if (o.type == msgpack::type::POSITIVE_INTEGER) v = (double)o.via.u64;
  else if (o.type == msgpack::type::NEGATIVE_INTEGER) v = (double)o.via.i64;
  else wrong_type(o, what, "number");
  if (!std::isfinite(v)) throw BadMessage(std::string(what) + ": not a finite number");
  return v;
}

bool as_bool(const msgpack::object& o, std::string_view what) {
  if (o.type != msgpack::type::BOOLEAN) wrong_type(o, what, "bool");
  return o.via.boolean;
}

std::string_view as_str(const msgpack::object& o, std::string_view what) {
  if (o.type != msgpack::type::STR) wrong_type(o, what, "str");
  return {o.via.str.ptr, o.via.str.size};
}

std::string_view as_bin(const msgpack::object& o, std::string_view what) {
  if (o.type != msgpack::type::BIN) wrong_type(o, what, "bin");
  return {o.via.bin.ptr, o.via.bin.size};
}

std::string_view as_bytes(const msgpack::object& o, std::string_view what) {
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  if (o.type == msgpack::type::BIN) return {o.via.bin.ptr, o.via.bin.size};
  wrong_type(o, what, "str or bin");
}

const msgpack::object& as_map(const msgpack::object& o, std::string_view what) {
  if (o.type != msgpack::type::MAP) wrong_type(o, what, "map");
  return o;
}

const msgpack::object& as_array(const msgpack::object& o, std::string_view what) {
  if (o.type != msgpack::type::ARRAY) wrong_type(o, what, "array");
  return o;
}

std::string pack_object(const msgpack::object& o) {
  Buf b;
  Packer pk(b);
  pk.pack(o);
  return std::move(b.s);
}

static void render(const msgpack::object& o, std::string& out, size_t max_bytes) {
  if (out.size() > max_bytes) return;
  char tmp[64];
  switch (o.type) {
    case msgpack::type::NIL: out += "null"; break;
    case msgpack::type::BOOLEAN: out += o.via.boolean ? "true" : "false"; break;
    case msgpack::type::POSITIVE_INTEGER: out += std::to_string(o.via.u64); break;
    case msgpack::type::NEGATIVE_INTEGER: out += std::to_string(o.via.i64); break;
    case msgpack::type::FLOAT32: case msgpack::type::FLOAT64:
      std::snprintf(tmp, sizeof tmp, "%.17g", o.via.f64);
      out += tmp;
      break;
    case msgpack::type::STR:
      out += '"';
      for (uint32_t i = 0; i < o.via.str.size; i++) {
        unsigned char c = o.via.str.ptr[i];
        if (c == '"' || c == '\\') out += '\\', out += (char)c;
        else if (c < 0x20) {
          std::snprintf(tmp, sizeof tmp, "\\u%04x", c);
          out += tmp;
        } else out += (char)c;
      }
      out += '"';
      break;
    case msgpack::type::BIN: case msgpack::type::EXT: {
      uint32_t n = o.type == msgpack::type::BIN ? o.via.bin.size : o.via.ext.size;
      const char* p = o.type == msgpack::type::BIN ? o.via.bin.ptr : o.via.ext.ptr;
      out += "\"0x";
      for (uint32_t i = 0; i < n && i < 64; i++) {
        std::snprintf(tmp, sizeof tmp, "%02x", (unsigned char)p[i]);
        out += tmp;
      }
      if (n > 64) out += "...";
      out += '"';
      break;
    }
    case msgpack::type::ARRAY:
      out += '[';
      for (uint32_t i = 0; i < o.via.array.size; i++) {
        if (i) out += ',';
        render(o.via.array.ptr[i], out, max_bytes);
      }
      out += ']';
      break;
    case msgpack::type::MAP:
      out += '{';
      for (uint32_t i = 0; i < o.via.map.size; i++) {
        if (i) out += ',';
        render(o.via.map.ptr[i].key, out, max_bytes);
        out += ':';
        render(o.via.map.ptr[i].val, out, max_bytes);
      }
      out += '}';
      break;
  }
}

std::string object_to_text(const msgpack::object& o, size_t max_bytes) {
  std::string out;
  render(o, out, max_bytes);
  if (out.size() > max_bytes) out = out.substr(0, max_bytes) + "...";
  return out;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

static void pack_tensor_fields(Packer& pk, DType dtype, const std::vector<int64_t>& shape, size_t nbytes) {
  pk.pack_map(3);
  pack_str(pk, "dtype");
  std::string name = dtype_name(dtype);
  for (auto& c : name) c = (char)std::tolower((unsigned char)c);
  pack_str(pk, name);
  pack_str(pk, "shape");
  pk.pack_array((uint32_t)shape.size());
  for (int64_t d : shape) pk.pack_int64(d);
  pack_str(pk, "data");
  pk.pack_bin((uint32_t)nbytes);
}

void pack_tensor(Packer& pk, DType dtype, const std::vector<int64_t>& shape, const void* data, size_t nbytes) {
  pack_tensor_fields(pk, dtype, shape, nbytes);
  pk.pack_bin_body((const char*)data, (uint32_t)nbytes);
}

std::string tensor_head(DType dtype, const std::vector<int64_t>& shape, size_t nbytes) {
  Buf b;
  Packer pk(b);
  pack_tensor_fields(pk, dtype, shape, nbytes);
  return std::move(b.s);
}

TensorView unpack_tensor(const msgpack::object& o) {
  as_map(o, "tensor");
  TensorView t;
  std::string dt(as_str(need_field(o, "dtype"), "tensor dtype"));
  if (!dtype_from_name(dt, &t.dtype)) throw BadMessage("tensor dtype: unknown '" + dt + "'");
  auto& shape = as_array(need_field(o, "shape"), "tensor shape");
  if (shape.via.array.size > 8) throw BadMessage("tensor shape: more than 8 dimensions");
  // Element count bounded so the byte computation below cannot overflow.
  const int64_t kMaxElems = int64_t(1) << 40;
  int64_t numel = 1;
  for (uint32_t i = 0; i < shape.via.array.size; i++) {
    int64_t d = as_int(shape.via.array.ptr[i], "tensor shape");
    if (d < 0 || d > kMaxElems) throw BadMessage("tensor shape: bad dimension");
    t.shape.push_back(d);
    numel = d == 0 ? 0 : numel;
    if (numel && numel > kMaxElems / d) throw BadMessage("tensor shape: too many elements");
    numel *= d;
  }
  t.data = as_bin(need_field(o, "data"), "tensor data");
  int64_t bs = dtype_block_size(t.dtype);
  if (numel % bs != 0 || (t.shape.empty() ? bs != 1 : t.shape.back() % bs != 0))
    throw BadMessage("tensor shape: not a multiple of the dtype's block size");
  if ((uint64_t)(numel / bs) * dtype_block_bytes(t.dtype) != t.data.size())
    throw BadMessage("tensor data: " + std::to_string(t.data.size()) + " bytes do not match dtype and shape");
  return t;
}

}  // namespace engine::net
