// GGUF reader/writer: round trips of every metadata and tensor type, and every
// kind of malformed file the reader must refuse with a clear error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "core/error.h"
#include "core/gguf.h"

using namespace engine;

namespace {

std::string temp_path(const std::string& tag) {
  return testing::TempDir() + "gguf_" + tag + "_" + std::to_string(getpid()) + ".gguf";
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Expects from_memory to throw an Error whose message contains `what`.
void expect_error(const std::vector<uint8_t>& bytes, const std::string& what) {
  try {
    GGUFFile::from_memory(bytes.data(), bytes.size(), "bad.gguf");
    FAIL() << "accepted a malformed file (expected: " << what << ")";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "message: " << msg;
  }
}

// A small valid file with two tensors, built by the writer.
std::vector<uint8_t> small_file() {
  static std::vector<float> a(64, 1.5f), b(32, -2.0f);
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("test.count", 7);
  w.add_tensor("a", DType::F32, {16, 4}, a.data(), a.size() * 4);
  w.add_tensor("b", DType::F32, {32}, b.data(), b.size() * 4);
  std::string p = temp_path("small");
  w.write(p);
  auto bytes = read_all(p);
  std::remove(p.c_str());
  return bytes;
}

void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }
void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

// Byte offset of the first tensor-info record in small_file() (after header and metadata).
size_t tensor_info_offset(const std::vector<uint8_t>& b) {
  std::string name = "a";
  for (size_t i = 24; i + 9 < b.size(); i++) {
    uint64_t len;
    std::memcpy(&len, b.data() + i, 8);
    if (len == 1 && b[i + 8] == 'a') return i;
  }
  return 0;
}

}  // namespace

TEST(GGUF, MetadataRoundTripEveryType) {
  GGUFWriter w(64);
  auto scalar = [&](const char* key, GGUFType t, uint64_t u, int64_t i, double f) {
    GGUFValue v;
    v.type = t;
    v.u = u;
    v.i = i;
    v.f = f;
    w.set(key, v);
  };
  scalar("u8", GGUFType::U8, 200, 0, 0);
  scalar("i8", GGUFType::I8, 0, -100, 0);
  scalar("u16", GGUFType::U16, 60000, 0, 0);
  scalar("i16", GGUFType::I16, 0, -30000, 0);
  scalar("u32", GGUFType::U32, 4000000000u, 0, 0);
  scalar("i32", GGUFType::I32, 0, -2000000000, 0);
  scalar("u64", GGUFType::U64, 1ull << 60, 0, 0);
  scalar("i64", GGUFType::I64, 0, -(1ll << 60), 0);
  scalar("f32", GGUFType::F32, 0, 0, 0.25);
  scalar("f64", GGUFType::F64, 0, 0, 1e-300);
  w.set_bool("bool", true);
  w.set_string("str", std::string("h\xc3\xa9llo\0x", 7));
  w.set_string_array("strs", {"a", "", "ccc"});
  w.set_f32_array("f32s", {1.0f, -2.5f});
  w.set_i32_array("i32s", {});
  GGUFValue nested;
  nested.type = GGUFType::ARRAY;
  nested.elem_type = GGUFType::ARRAY;
  nested.count = 2;
  GGUFValue inner1;
  inner1.type = GGUFType::ARRAY;
  inner1.elem_type = GGUFType::STRING;
  inner1.count = 1;
  inner1.strs = {"x"};
  GGUFValue inner2;
  inner2.type = GGUFType::ARRAY;
  inner2.elem_type = GGUFType::U16;
  inner2.count = 2;
  inner2.raw = {1, 0, 2, 0};
  nested.items = {inner1, inner2};
  w.set("nested", nested);

  std::string p = temp_path("meta");
  w.write(p);
  auto f = GGUFFile::open(p);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->get_int("u8", 0), 200);
  EXPECT_EQ(f->get_int("i8", 0), -100);
  EXPECT_EQ(f->get_int("u16", 0), 60000);
  EXPECT_EQ(f->get_int("i16", 0), -30000);
  EXPECT_EQ(f->get_int("u32", 0), 4000000000ll);
  EXPECT_EQ(f->get_int("i32", 0), -2000000000);
  EXPECT_EQ(f->get_int("u64", 0), 1ll << 60);
  EXPECT_EQ(f->get_int("i64", 0), -(1ll << 60));
  EXPECT_FLOAT_EQ(f->get_float("f32", 0), 0.25);
  EXPECT_DOUBLE_EQ(f->get_float("f64", 0), 1e-300);
  EXPECT_TRUE(f->get_bool("bool", false));
  EXPECT_EQ(f->get_string("str"), std::string("h\xc3\xa9llo\0x", 7));
  EXPECT_EQ(f->find("strs")->strs, (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f->find("f32s")->array_float(1), -2.5);
  EXPECT_EQ(f->find("i32s")->count, 0u);
  const GGUFValue* n = f->find("nested");
  ASSERT_EQ(n->items.size(), 2u);
  EXPECT_EQ(n->items[0].strs[0], "x");
  EXPECT_EQ(n->items[1].array_int(1), 2);
  // Wrong-type access is a clear error, absent keys give the default.
  EXPECT_THROW(f->get_string("u8"), Error);
  EXPECT_EQ(f->get_int("absent", 42), 42);
  EXPECT_THROW(f->require_int("absent"), Error);
  std::remove(p.c_str());
}

TEST(GGUF, TensorRoundTripEveryType) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> U(-3, 3);
  std::vector<float> src(64 * 3);
  for (float& x : src) x = U(rng);
  GGUFWriter w;
  std::vector<std::vector<uint8_t>> bufs;
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};
  for (DType t : types) {
    bufs.emplace_back(dtype_row_bytes(t, (int64_t)src.size()));
    for (int r = 0; r < 3; r++) quantize_row(t, src.data() + r * 64, bufs.back().data() + r * dtype_row_bytes(t, 64), 64);
    w.add_tensor(std::string("t_") + dtype_name(t), t, {64, 3}, bufs.back().data(), bufs.back().size());
  }
  std::string p = temp_path("tensors");
  w.write(p);
  auto f = GGUFFile::open(p);
  ASSERT_EQ(f->tensors().size(), 4u);
  size_t k = 0;
  for (DType t : types) {
    const GGUFTensorInfo& ti = f->require_tensor(std::string("t_") + dtype_name(t));
    EXPECT_EQ(ti.type, t);
    EXPECT_EQ(ti.ne[0], 64);
    EXPECT_EQ(ti.ne[1], 3);
    EXPECT_EQ(ti.n_dims, 2u);
    EXPECT_EQ((uintptr_t)ti.data % 32, 0u);
    ASSERT_EQ(ti.nbytes, bufs[k].size());
    EXPECT_EQ(std::memcmp(ti.data, bufs[k].data(), ti.nbytes), 0);
    // Dequantized values stay within the type's precision.
    std::vector<float> back(src.size());
    for (int r = 0; r < 3; r++) dequantize_row(t, ti.data + r * dtype_row_bytes(t, 64), back.data() + r * 64, 64);
    float tol = t == DType::F32 ? 0 : t == DType::F16 ? 2e-3f : t == DType::BF16 ? 2e-2f : 3e-2f;
    for (size_t i = 0; i < src.size(); i++) EXPECT_NEAR(back[i], src[i], tol) << dtype_name(t) << " " << i;
    k++;
  }
  std::remove(p.c_str());
}

TEST(GGUF, HalfConversionsAreExact) {
  // Every finite f16 survives f16 -> f32 -> f16.
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    ASSERT_EQ(f32_to_f16(f16_to_f32((uint16_t)h)), h) << h;
  }
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);  // largest value that rounds down to 65504
}

TEST(GGUF, WriterLeavesNoTempFileAndReplacesAtomically) {
  std::string p = temp_path("atomic");
  { std::ofstream(p) << "old contents"; }
  GGUFWriter w;
  w.set_u32("x", 1);
  w.write(p);
  EXPECT_EQ(access((p + ".tmp").c_str(), F_OK), -1);
  EXPECT_EQ(GGUFFile::open(p)->get_int("x", 0), 1);
  // A failing write (directory does not exist) leaves nothing behind.
  EXPECT_THROW(w.write("/nonexistent-dir/x.gguf"), Error);
  std::remove(p.c_str());
}

TEST(GGUFMalformed, BadMagicAndVersion) {
  auto b = small_file();
  auto c = b;
  c[0] = 'X';
  expect_error(c, "bad magic");
  c = b;
  put_u32(c, 4, 1);
  expect_error(c, "version 1");
  put_u32(c, 4, 99);
  expect_error(c, "unsupported GGUF version 99");
  expect_error({}, "bad magic");
}

TEST(GGUFMalformed, TruncatedAnywhere) {
  auto b = small_file();
  // Every prefix of the file must be refused cleanly (none is a valid file).
  for (size_t n = 0; n < b.size() - 1; n++) {
    std::vector<uint8_t> c(b.begin(), b.begin() + n);
    EXPECT_THROW(GGUFFile::from_memory(c.data(), c.size(), "t.gguf"), Error) << "prefix " << n;
  }
}

TEST(GGUFMalformed, AbsurdCounts) {
  auto b = small_file();
  auto c = b;
  put_u64(c, 8, 1ull << 62);
  expect_error(c, "tensor count");
  c = b;
  put_u64(c, 16, 1ull << 62);
  expect_error(c, "metadata count");
  // A string length far beyond the file (first key's length).
  c = b;
  put_u64(c, 24, 1ull << 50);
  expect_error(c, "exceeds the file");
}

TEST(GGUFMalformed, ArrayCountsAreBounded) {
  GGUFWriter w;
  w.set_string_array("s", {"a", "b"});
  std::string p = temp_path("arr");
  w.write(p);
  auto b = read_all(p);
  std::remove(p.c_str());
  // header(24) + key len(8) + "s"(1) + type(4) + elem type(4) = 41: the array count.
  put_u64(b, 41, 1ull << 40);
  expect_error(b, "exceeds the file");
}

TEST(GGUFMalformed, TensorProblems) {
  auto b = small_file();
  size_t ti = tensor_info_offset(b);
  ASSERT_GT(ti, 0u);
  // Record layout: u64 len | "a" | u32 n_dims | i64 ne0 | i64 ne1 | u32 type | u64 offset
  const size_t n_dims_at = ti + 9, ne0_at = ti + 13, type_at = ti + 29, off_at = ti + 33;
  auto c = b;
  put_u32(c, n_dims_at, 7);
  expect_error(c, "dimensions");
  c = b;
  put_u64(c, ne0_at, (uint64_t)-5);
  expect_error(c, "bad dimension");
  c = b;
  put_u64(c, ne0_at, 1ull << 39);
  expect_error(c, "past the end");
  c = b;
  put_u32(c, type_at, 77);
  expect_error(c, "unsupported tensor type 77");
  c = b;
  put_u64(c, off_at, 1ull << 40);
  expect_error(c, "past the end");
  c = b;
  put_u64(c, off_at, 3);
  expect_error(c, "not aligned");
  // Tensor 'b' placed on top of tensor 'a'.
  c = b;
  size_t tb = off_at + 8;  // next record: len(8) "b"(1) n_dims(4) ne0(8) type(4) offset(8)
  put_u64(c, tb + 8 + 1 + 4 + 8 + 4, 0);
  expect_error(c, "overlap");
}

TEST(GGUFMalformed, WrongMetadataTypes) {
  auto b = small_file();
  // The first value's type field: header(24) + len(8) + "general.architecture"(20).
  auto c = b;
  put_u32(c, 52, 99);
  expect_error(c, "unknown value type 99");
  auto f = GGUFFile::from_memory(b.data(), b.size(), "ok.gguf");
  EXPECT_THROW(f->get_int("general.architecture", 0), Error);
}

TEST(GGUF, ReadsTheSharedModel) {
  std::string p = std::string(ENGINE_SHARED_DIR) + "/models/stories260K.gguf";
  if (access(p.c_str(), R_OK) != 0) GTEST_SKIP() << "shared test data not found at " << p;
  auto f = GGUFFile::open(p);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->require_tensor("token_embd.weight").ne[1], 512);
  EXPECT_EQ(f->find("tokenizer.ggml.tokens")->count, 512u);
}
