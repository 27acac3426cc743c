// GGUF container: reader (mmap, v2/v3) and writer.
//
// The reader checks every count, length and offset against the file before it
// uses it, so a malformed or hostile file gives an engine::Error naming the file
// and what is wrong, never a crash or a huge allocation. Tensor data is never
// copied: TensorInfo::data points into the mapping.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace engine {

enum class GGUFType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GGUFType t);

// One metadata value. Scalars live in the union-like fields; arrays keep their
// element type and either strings, raw little-endian scalars or nested values.
struct GGUFValue {
  GGUFType type = GGUFType::U8;
  uint64_t u = 0;   // unsigned ints and bool
  int64_t i = 0;    // signed ints
  double f = 0;     // f32 / f64
  std::string str;  // STRING

  GGUFType elem_type = GGUFType::U8;  // ARRAY
  uint64_t count = 0;                 // ARRAY: number of elements
  std::vector<std::string> strs;      // ARRAY of STRING
  std::vector<uint8_t> raw;           // ARRAY of fixed-size scalars, packed
  std::vector<GGUFValue> items;       // ARRAY of ARRAY (nested)

  bool is_integer() const;
  bool is_float() const { return type == GGUFType::F32 || type == GGUFType::F64; }
  // Numeric views with range checks; throw Error on a type mismatch.
  int64_t as_int() const;
  double as_float() const;
  // Element k of a numeric array as int64 / double.
  int64_t array_int(uint64_t k) const;
  double array_float(uint64_t k) const;
  std::string to_string(size_t max_items = 8) const;  // for `engine info`
};

struct GGUFTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the innermost (contiguous) dimension
  DType type = DType::F32;
  uint64_t offset = 0;           // relative to the start of the data section
  size_t nbytes = 0;
  const uint8_t* data = nullptr; // into the mapping
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GGUFFile {
 public:
  // Maps and parses `path`. Throws Error("<path>: <what is wrong>").
  static std::unique_ptr<GGUFFile> open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer and tests); the bytes must outlive the object.
  static std::unique_ptr<GGUFFile> from_memory(const uint8_t* data, size_t size, const std::string& name);
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }

  // Metadata in file order (keys are unique; a duplicate key is an error).
  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
  const GGUFValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters: the default when absent; Error when present with the wrong type.
  std::string get_string(const std::string& key, const std::string& def = "") const;
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_float(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  // The same, but the key is required.
  int64_t require_int(const std::string& key) const;
  std::string require_string(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(const std::string& name) const;
  // Like find_tensor but throws Error naming the file when missing.
  const GGUFTensorInfo& require_tensor(const std::string& name) const;

  // Error for this file, for callers that find something semantically wrong.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  GGUFFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GGUFTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// llama.cpp's general.file_type (LLAMA_FTYPE_*) for a model whose matrices are `t`
// (F32 0, F16 1, Q4_0 2, Q8_0 7, BF16 32; other types 0).
uint32_t llama_file_type(DType t);

// Writes a GGUF v3 file. Tensor data is streamed from caller-owned buffers at
// write time. write() goes to "<path>.tmp" and renames, so an interrupted run
// never leaves a half-written file under the final name.
class GGUFWriter {
 public:
  explicit GGUFWriter(size_t alignment = 32) : alignment_(alignment) {}

  void set(const std::string& key, GGUFValue v);  // replaces an existing key
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Copies every metadata key of `src` (except general.alignment).
  void copy_metadata(const GGUFFile& src);

  // `data` must stay valid until write(); its size must match the type and shape.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne,
                  const void* data, size_t nbytes);
  // Like add_tensor, but the writer keeps its own copy of the bytes.
  void add_tensor_copy(const std::string& name, DType type, const std::vector<int64_t>& ne,
                       const void* data, size_t nbytes);

  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    const void* data;
    size_t nbytes;
  };
  size_t alignment_;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<Tensor> tensors_;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned_;
};

// Builders for metadata values.
GGUFValue gguf_string(const std::string& s);
GGUFValue gguf_u32(uint32_t v);
GGUFValue gguf_i32(int32_t v);
GGUFValue gguf_f32(float v);
GGUFValue gguf_bool(bool v);

}  // namespace engine
