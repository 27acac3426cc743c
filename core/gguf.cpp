// GGUF reader and writer. Layout (all little-endian):
//   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv × { string key | u32 type | value }
//   n_tensors × { string name | u32 n_dims | n_dims × i64 ne | u32 type | u64 offset }
//   padding to `general.alignment` (default 32) | tensor data
// A string is u64 length + bytes; an array is u32 element type + u64 count + elements.
#include "core/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "core/error.h"

namespace engine {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::BOOL: return 1;
    case GGUFType::U16: case GGUFType::I16: return 2;
    case GGUFType::U32: case GGUFType::I32: case GGUFType::F32: return 4;
    case GGUFType::U64: case GGUFType::I64: case GGUFType::F64: return 8;
    default: return 0;
  }
}

bool type_valid(uint32_t t) { return t <= (uint32_t)GGUFType::F64; }

// Bounds-checked cursor over the file image. Every read checks the remaining size first.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    std::ostringstream ss;
    ss << what << " (at byte " << pos_ << ")";
    throw file_error(path_, ss.str());
  }
  void need(size_t k, const char* what) const {
    if (k > left()) fail(std::string("file is truncated: ") + what + " runs past the end");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > left()) fail(std::string(what) + ": string length " + std::to_string(len) + " exceeds the file");
    std::string s((const char*)p_ + pos_, (size_t)len);
    pos_ += (size_t)len;
    return s;
  }
  const uint8_t* take(size_t k, const char* what) {
    need(k, what);
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& path_;
};

void read_value(Cursor& c, GGUFType type, GGUFValue& v, int depth, const std::string& key);

void read_array(Cursor& c, GGUFValue& v, int depth, const std::string& key) {
  if (depth >= kMaxArrayDepth) c.fail("key '" + key + "': arrays nested too deeply");
  uint32_t et = c.read<uint32_t>("array type");
  if (!type_valid(et)) c.fail("key '" + key + "': unknown array element type " + std::to_string(et));
  v.elem_type = (GGUFType)et;
  v.count = c.read<uint64_t>("array length");
  if (v.elem_type == GGUFType::STRING) {
    // Each string is at least its 8-byte length: bound the count before reserving.
    if (v.count > c.left() / 8) c.fail("key '" + key + "': array of " + std::to_string(v.count) + " strings exceeds the file");
    v.strs.reserve((size_t)v.count);
    for (uint64_t k = 0; k < v.count; k++) v.strs.push_back(c.read_string("array string"));
  } else if (v.elem_type == GGUFType::ARRAY) {
    if (v.count > c.left() / 12) c.fail("key '" + key + "': array of " + std::to_string(v.count) + " arrays exceeds the file");
    v.items.resize((size_t)v.count);
    for (auto& item : v.items) {
      item.type = GGUFType::ARRAY;
      read_array(c, item, depth + 1, key);
    }
  } else {
    size_t es = scalar_size(v.elem_type);
    if (v.count > c.left() / es) c.fail("key '" + key + "': array of " + std::to_string(v.count) + " elements exceeds the file");
    const uint8_t* p = c.take((size_t)v.count * es, "array data");
    v.raw.assign(p, p + (size_t)v.count * es);
    if (v.elem_type == GGUFType::BOOL)
      for (uint8_t b : v.raw)
        if (b > 1) c.fail("key '" + key + "': bool array element is not 0 or 1");
  }
}

void read_value(Cursor& c, GGUFType type, GGUFValue& v, int depth, const std::string& key) {
  v.type = type;
  switch (type) {
    case GGUFType::U8: v.u = c.read<uint8_t>("value"); break;
    case GGUFType::I8: v.i = c.read<int8_t>("value"); break;
    case GGUFType::U16: v.u = c.read<uint16_t>("value"); break;
    case GGUFType::I16: v.i = c.read<int16_t>("value"); break;
    case GGUFType::U32: v.u = c.read<uint32_t>("value"); break;
    case GGUFType::I32: v.i = c.read<int32_t>("value"); break;
    case GGUFType::U64: v.u = c.read<uint64_t>("value"); break;
    case GGUFType::I64: v.i = c.read<int64_t>("value"); break;
    case GGUFType::F32: v.f = c.read<float>("value"); break;
    case GGUFType::F64: v.f = c.read<double>("value"); break;
    case GGUFType::BOOL: {
      uint8_t b = c.read<uint8_t>("value");
      if (b > 1) c.fail("key '" + key + "': bool value is not 0 or 1");
      v.u = b;
      break;
    }
    case GGUFType::STRING: v.str = c.read_string("string value"); break;
    case GGUFType::ARRAY: read_array(c, v, depth, key); break;
  }
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                "string", "array", "u64", "i64", "f64"};
  return (uint32_t)t <= 12 ? names[(uint32_t)t] : "?";
}

// ---- GGUFValue ------------------------------------------------------------------

bool GGUFValue::is_integer() const {
  switch (type) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::U16: case GGUFType::I16: case GGUFType::U32:
    case GGUFType::I32: case GGUFType::U64: case GGUFType::I64:
      return true;
    default:
      return false;
  }
}

static bool is_signed(GGUFType t) {
  return t == GGUFType::I8 || t == GGUFType::I16 || t == GGUFType::I32 || t == GGUFType::I64;
}

int64_t GGUFValue::as_int() const {
  if (type == GGUFType::BOOL) return (int64_t)u;
  if (!is_integer()) throw Error(std::string("expected an integer, found ") + gguf_type_name(type));
  if (is_signed(type)) return i;
  if (u > (uint64_t)INT64_MAX) throw Error("integer value out of range");
  return (int64_t)u;
}

double GGUFValue::as_float() const {
  if (is_float()) return f;
  if (is_integer()) return is_signed(type) ? (double)i : (double)u;
  throw Error(std::string("expected a number, found ") + gguf_type_name(type));
}

int64_t GGUFValue::array_int(uint64_t k) const {
  if (type != GGUFType::ARRAY || k >= count || raw.empty()) throw Error("array index out of range");
  const uint8_t* p = raw.data() + k * scalar_size(elem_type);
  switch (elem_type) {
    case GGUFType::U8: case GGUFType::BOOL: return *p;
    case GGUFType::I8: return (int8_t)*p;
    case GGUFType::U16: { uint16_t x; std::memcpy(&x, p, 2); return x; }
    case GGUFType::I16: { int16_t x; std::memcpy(&x, p, 2); return x; }
    case GGUFType::U32: { uint32_t x; std::memcpy(&x, p, 4); return x; }
    case GGUFType::I32: { int32_t x; std::memcpy(&x, p, 4); return x; }
    case GGUFType::U64: { uint64_t x; std::memcpy(&x, p, 8); return (int64_t)x; }
    case GGUFType::I64: { int64_t x; std::memcpy(&x, p, 8); return x; }
    case GGUFType::F32: { float x; std::memcpy(&x, p, 4); return (int64_t)x; }
    case GGUFType::F64: { double x; std::memcpy(&x, p, 8); return (int64_t)x; }
    default: throw Error("array is not numeric");
  }
}

double GGUFValue::array_float(uint64_t k) const {
  if (type != GGUFType::ARRAY || k >= count || raw.empty()) throw Error("array index out of range");
  const uint8_t* p = raw.data() + k * scalar_size(elem_type);
  if (elem_type == GGUFType::F32) { float x; std::memcpy(&x, p, 4); return x; }
  if (elem_type == GGUFType::F64) { double x; std::memcpy(&x, p, 8); return x; }
  return (double)array_int(k);
}

std::string GGUFValue::to_string(size_t max_items) const {
  std::ostringstream ss;
  switch (type) {
    case GGUFType::STRING: {
      std::string s = str.size() > 120 ? str.substr(0, 117) + "..." : str;
      for (char& ch : s)
        if (ch == '\n') ch = ' ';
      ss << '"' << s << '"';
      break;
    }
    case GGUFType::BOOL: ss << (u ? "true" : "false"); break;
    case GGUFType::F32: case GGUFType::F64: ss << f; break;
    case GGUFType::ARRAY: {
      ss << "[" << gguf_type_name(elem_type) << " x " << count << "]";
      if (count && max_items) {
        ss << " ";
        size_t shown = std::min<uint64_t>(count, max_items);
        for (size_t k = 0; k < shown; k++) {
          if (k) ss << ", ";
          if (elem_type == GGUFType::STRING) ss << '"' << strs[k] << '"';
          else if (elem_type == GGUFType::ARRAY) ss << items[k].to_string(2);
          else if (elem_type == GGUFType::F32 || elem_type == GGUFType::F64) ss << array_float(k);
          else ss << array_int(k);
        }
        if (shown < count) ss << ", ...";
      }
      break;
    }
    default:
      if (is_signed(type)) ss << i;
      else ss << u;
  }
  return ss.str();
}

GGUFValue gguf_string(const std::string& s) { GGUFValue v; v.type = GGUFType::STRING; v.str = s; return v; }
GGUFValue gguf_u32(uint32_t x) { GGUFValue v; v.type = GGUFType::U32; v.u = x; return v; }
GGUFValue gguf_i32(int32_t x) { GGUFValue v; v.type = GGUFType::I32; v.i = x; return v; }
GGUFValue gguf_f32(float x) { GGUFValue v; v.type = GGUFType::F32; v.f = x; return v; }
GGUFValue gguf_bool(bool x) { GGUFValue v; v.type = GGUFType::BOOL; v.u = x; return v; }

// ---- GGUFFile -------------------------------------------------------------------

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw file_error(path, std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw file_error(path, "not a regular file");
  }
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = path;
  f->size_ = (size_t)st.st_size;
  if (f->size_ == 0) {
    ::close(fd);
    throw file_error(path, "file is empty, not a GGUF file");
  }
  void* p = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw file_error(path, std::string("cannot map: ") + std::strerror(errno));
  f->base_ = (const uint8_t*)p;
  f->mapped_ = true;
  f->parse();
  return f;
}

std::unique_ptr<GGUFFile> GGUFFile::from_memory(const uint8_t* data, size_t size, const std::string& name) {
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = name;
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

GGUFFile::~GGUFFile() {
  if (mapped_) munmap((void*)base_, size_);
}

void GGUFFile::fail(const std::string& what) const { throw file_error(path_, what); }

void GGUFFile::parse() {
  Cursor c(base_, size_, path_);
  if (size_ < 4 || c.read<uint32_t>("magic") != kMagic) fail("not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) fail("GGUF version 1 is not supported (convert it with a newer llama.cpp)");
  if (version_ != 2 && version_ != 3) fail("unsupported GGUF version " + std::to_string(version_));
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Smallest possible entries: a kv is 8 (key length) + 4 (type) + 1 bytes; a tensor info 8 + 4 + 4 + 8.
  if (n_kv > c.left() / 13) fail("metadata count " + std::to_string(n_kv) + " is larger than the file can hold");
  if (n_tensors > c.left() / 24) fail("tensor count " + std::to_string(n_tensors) + " is larger than the file can hold");

  kv_.reserve((size_t)n_kv);
  for (uint64_t k = 0; k < n_kv; k++) {
    std::string key = c.read_string("metadata key");
    if (key.empty()) c.fail("empty metadata key");
    uint32_t t = c.read<uint32_t>("metadata type");
    if (!type_valid(t)) c.fail("key '" + key + "': unknown value type " + std::to_string(t));
    GGUFValue v;
    read_value(c, (GGUFType)t, v, 0, key);
    if (kv_index_.count(key)) c.fail("duplicate metadata key '" + key + "'");
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GGUFValue* a = find("general.alignment")) {
    if (a->type != GGUFType::U32) fail("general.alignment must be a u32");
    if (a->u == 0 || (a->u & (a->u - 1)) || a->u > (1u << 20))
      fail("general.alignment " + std::to_string(a->u) + " is not a power of two");
    alignment_ = (size_t)a->u;
  }

  tensors_.reserve((size_t)n_tensors);
  for (uint64_t k = 0; k < n_tensors; k++) {
    GGUFTensorInfo ti;
    ti.name = c.read_string("tensor name");
    if (ti.name.empty()) c.fail("tensor " + std::to_string(k) + " has an empty name");
    ti.n_dims = c.read<uint32_t>("tensor dimension count");
    if (ti.n_dims == 0 || ti.n_dims > kMaxDims)
      c.fail("tensor '" + ti.name + "': " + std::to_string(ti.n_dims) + " dimensions (1 to 4 allowed)");
    for (uint32_t d = 0; d < ti.n_dims; d++) {
      int64_t ne = c.read<int64_t>("tensor shape");
      if (ne < 0 || ne > (int64_t(1) << 40)) c.fail("tensor '" + ti.name + "': bad dimension " + std::to_string(ne));
      ti.ne[d] = ne;
    }
    uint32_t type = c.read<uint32_t>("tensor type");
    if (!dtype_known(type)) c.fail("tensor '" + ti.name + "': unsupported tensor type " + std::to_string(type));
    ti.type = (DType)type;
    ti.offset = c.read<uint64_t>("tensor offset");
    // Element count, with overflow checks on the product.
    unsigned __int128 n = 1;
    for (int d = 0; d < 4; d++) n *= (unsigned __int128)ti.ne[d];
    if (n > ((unsigned __int128)1 << 50)) c.fail("tensor '" + ti.name + "': absurd element count");
    int64_t bs = dtype_block_size(ti.type);
    if (ti.ne[0] % bs) c.fail("tensor '" + ti.name + "': row length " + std::to_string(ti.ne[0]) +
                              " is not a multiple of the " + dtype_name(ti.type) + " block size");
    ti.nbytes = (size_t)((uint64_t)n / bs * dtype_block_bytes(ti.type));
    if (tensor_index_.count(ti.name)) c.fail("duplicate tensor name '" + ti.name + "'");
    tensor_index_[ti.name] = tensors_.size();
    tensors_.push_back(std::move(ti));
  }

  size_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_) fail("file is truncated before the tensor data");
  size_t data_size = size_ > data_start ? size_ - data_start : 0;
  for (auto& ti : tensors_) {
    if (ti.offset % alignment_) fail("tensor '" + ti.name + "': offset " + std::to_string(ti.offset) + " is not aligned to " + std::to_string(alignment_));
    if (ti.offset > data_size || ti.nbytes > data_size - ti.offset)
      fail("tensor '" + ti.name + "': data (offset " + std::to_string(ti.offset) + ", " + std::to_string(ti.nbytes) +
           " bytes) runs past the end of the file");
    ti.data = base_ + data_start + ti.offset;
  }
  // Tensors must not overlap: sort by offset and compare neighbours.
  std::vector<const GGUFTensorInfo*> order;
  for (auto& ti : tensors_) order.push_back(&ti);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < order.size(); k++)
    if (order[k - 1]->nbytes && order[k - 1]->offset + order[k - 1]->nbytes > order[k]->offset)
      fail("tensors '" + order[k - 1]->name + "' and '" + order[k]->name + "' overlap");
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::string GGUFFile::get_string(const std::string& key, const std::string& def) const {
  const GGUFValue* v = find(key);
  if (!v) return def;
  if (v->type != GGUFType::STRING) fail("key '" + key + "' should be a string, found " + gguf_type_name(v->type));
  return v->str;
}

int64_t GGUFFile::get_int(const std::string& key, int64_t def) const {
  const GGUFValue* v = find(key);
  if (!v) return def;
  if (!v->is_integer() && v->type != GGUFType::BOOL)
    fail("key '" + key + "' should be an integer, found " + gguf_type_name(v->type));
  try {
    return v->as_int();
  } catch (const Error& e) {
    fail("key '" + key + "': " + e.what());
  }
}

double GGUFFile::get_float(const std::string& key, double def) const {
  const GGUFValue* v = find(key);
  if (!v) return def;
  if (!v->is_float() && !v->is_integer()) fail("key '" + key + "' should be a number, found " + gguf_type_name(v->type));
  return v->as_float();
}

bool GGUFFile::get_bool(const std::string& key, bool def) const {
  const GGUFValue* v = find(key);
  if (!v) return def;
  if (v->type != GGUFType::BOOL) fail("key '" + key + "' should be a bool, found " + gguf_type_name(v->type));
  return v->u != 0;
}

int64_t GGUFFile::require_int(const std::string& key) const {
  if (!find(key)) fail("missing required metadata key '" + key + "'");
  return get_int(key, 0);
}

std::string GGUFFile::require_string(const std::string& key) const {
  if (!find(key)) fail("missing required metadata key '" + key + "'");
  return get_string(key);
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GGUFTensorInfo& GGUFFile::require_tensor(const std::string& name) const {
  const GGUFTensorInfo* t = find_tensor(name);
  if (!t) fail("missing tensor '" + name + "'");
  return *t;
}

// ---- GGUFWriter -----------------------------------------------------------------

void GGUFWriter::set(const std::string& key, GGUFValue v) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GGUFWriter::set_string(const std::string& key, const std::string& v) { set(key, gguf_string(v)); }
void GGUFWriter::set_u32(const std::string& key, uint32_t v) { set(key, gguf_u32(v)); }
void GGUFWriter::set_i32(const std::string& key, int32_t v) { set(key, gguf_i32(v)); }
void GGUFWriter::set_u64(const std::string& key, uint64_t x) {
  GGUFValue v;
  v.type = GGUFType::U64;
  v.u = x;
  set(key, v);
}
void GGUFWriter::set_f32(const std::string& key, float v) { set(key, gguf_f32(v)); }
void GGUFWriter::set_bool(const std::string& key, bool v) { set(key, gguf_bool(v)); }

void GGUFWriter::set_string_array(const std::string& key, const std::vector<std::string>& a) {
  GGUFValue v;
  v.type = GGUFType::ARRAY;
  v.elem_type = GGUFType::STRING;
  v.count = a.size();
  v.strs = a;
  set(key, std::move(v));
}

template <typename T>
static GGUFValue numeric_array(GGUFType et, const std::vector<T>& a) {
  GGUFValue v;
  v.type = GGUFType::ARRAY;
  v.elem_type = et;
  v.count = a.size();
  v.raw.resize(a.size() * sizeof(T));
  if (!a.empty()) std::memcpy(v.raw.data(), a.data(), v.raw.size());
  return v;
}

void GGUFWriter::set_f32_array(const std::string& key, const std::vector<float>& a) {
  set(key, numeric_array(GGUFType::F32, a));
}
void GGUFWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& a) {
  set(key, numeric_array(GGUFType::I32, a));
}

void GGUFWriter::copy_metadata(const GGUFFile& src) {
  for (auto& kv : src.metadata())
    if (kv.first != "general.alignment") set(kv.first, kv.second);
}

void GGUFWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne,
                            const void* data, size_t nbytes) {
  if (ne.empty() || ne.size() > kMaxDims) throw Error("tensor '" + name + "': 1 to 4 dimensions allowed");
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  if (ne[0] % dtype_block_size(type)) throw Error("tensor '" + name + "': row not a multiple of the block size");
  if (dtype_row_bytes(type, n) != nbytes) throw Error("tensor '" + name + "': byte size does not match its shape");
  for (auto& t : tensors_)
    if (t.name == name) throw Error("duplicate tensor name '" + name + "'");
  tensors_.push_back({name, type, ne, data, nbytes});
}

void GGUFWriter::add_tensor_copy(const std::string& name, DType type, const std::vector<int64_t>& ne,
                                 const void* data, size_t nbytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>((const uint8_t*)data, (const uint8_t*)data + nbytes);
  owned_.push_back(buf);
  add_tensor(name, type, ne, buf->data(), nbytes);
}

namespace {

class OutFile {
 public:
  OutFile(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw file_error(path, std::string("cannot create: ") + std::strerror(errno));
  }
  ~OutFile() {
    if (f_) std::fclose(f_);
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw file_error(path_, std::string("write failed: ") + std::strerror(errno));
    pos_ += n;
  }
  template <typename T>
  void put(T v) { write(&v, sizeof v); }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    write(s.data(), s.size());
  }
  void pad_to(size_t align) {
    static const uint8_t zeros[64] = {};
    size_t pad = (align - pos_ % align) % align;
    while (pad) {
      size_t k = std::min(pad, sizeof zeros);
      write(zeros, k);
      pad -= k;
    }
  }
  void close() {
    if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0 || std::fclose(f_) != 0) {
      f_ = nullptr;
      throw file_error(path_, std::string("write failed: ") + std::strerror(errno));
    }
    f_ = nullptr;
  }

 private:
  std::string path_;
  FILE* f_ = nullptr;
  size_t pos_ = 0;
};

void write_value(OutFile& o, const GGUFValue& v);

void write_array_body(OutFile& o, const GGUFValue& v) {
  o.put<uint32_t>((uint32_t)v.elem_type);
  o.put<uint64_t>(v.count);
  if (v.elem_type == GGUFType::STRING) {
    for (auto& s : v.strs) o.put_string(s);
  } else if (v.elem_type == GGUFType::ARRAY) {
    for (auto& item : v.items) write_array_body(o, item);
  } else {
    o.write(v.raw.data(), v.raw.size());
  }
}

void write_value(OutFile& o, const GGUFValue& v) {
  switch (v.type) {
    case GGUFType::U8: o.put<uint8_t>((uint8_t)v.u); break;
    case GGUFType::I8: o.put<int8_t>((int8_t)v.i); break;
    case GGUFType::U16: o.put<uint16_t>((uint16_t)v.u); break;
    case GGUFType::I16: o.put<int16_t>((int16_t)v.i); break;
    case GGUFType::U32: o.put<uint32_t>((uint32_t)v.u); break;
    case GGUFType::I32: o.put<int32_t>((int32_t)v.i); break;
    case GGUFType::U64: o.put<uint64_t>(v.u); break;
    case GGUFType::I64: o.put<int64_t>(v.i); break;
    case GGUFType::F32: o.put<float>((float)v.f); break;
    case GGUFType::F64: o.put<double>(v.f); break;
    case GGUFType::BOOL: o.put<uint8_t>(v.u ? 1 : 0); break;
    case GGUFType::STRING: o.put_string(v.str); break;
    case GGUFType::ARRAY: write_array_body(o, v); break;
  }
}

}  // namespace

void GGUFWriter::write(const std::string& path) const {
  std::string tmp = path + ".tmp";
  try {
    OutFile o(tmp);
    o.put<uint32_t>(kMagic);
    o.put<uint32_t>(3);
    o.put<uint64_t>(tensors_.size());
    bool custom_align = alignment_ != 32;
    o.put<uint64_t>(kv_.size() + (custom_align ? 1 : 0));
    if (custom_align) {
      o.put_string("general.alignment");
      o.put<uint32_t>((uint32_t)GGUFType::U32);
      o.put<uint32_t>((uint32_t)alignment_);
    }
    for (auto& kv : kv_) {
      o.put_string(kv.first);
      o.put<uint32_t>((uint32_t)kv.second.type);
      write_value(o, kv.second);
    }
    uint64_t offset = 0;
    for (auto& t : tensors_) {
      o.put_string(t.name);
      o.put<uint32_t>((uint32_t)t.ne.size());
      for (int64_t d : t.ne) o.put<int64_t>(d);
      o.put<uint32_t>((uint32_t)t.type);
      o.put<uint64_t>(offset);
      offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    }
    o.pad_to(alignment_);
    for (auto& t : tensors_) {
      o.write(t.data, t.nbytes);
      o.pad_to(alignment_);
    }
    o.close();
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw file_error(path, std::string("cannot rename temporary file: ") + std::strerror(e));
  }
}

uint32_t llama_file_type(DType t) {
  switch (t) {
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    default: return 0;
  }
}

}  // namespace engine
