// SpQR weights (Dettmers et al., 2023), a weight format like F16 or Q8_0: the in-memory form of one quantized
// linear layer and its GGUF encoding. docs/spqr-format.md is the specification;
// this header follows it.
//
// A weight W [rows = out features][cols = in features] is stored with its
// columns permuted (act-order): stored column c is original column perm[c].
// Stored columns are cut into groups of `groupsize`; per (row, group) a
// `wbits` code per weight and two `stat_bits` statistics codes (scale, zero).
// The statistics of `stat_groupsize` consecutive rows share four fp16 second-
// level numbers. The dequantized weight is
//     scale = s_scale * (scale_code - s_zero)      (second level, per row group)
//     zero  = z_scale * (zero_code  - z_zero)
//     w     = scale * (code - zero)
// except at outliers, which keep their fp16 value exactly. With stat_bits = 16
// (the GPTQ baseline) the statistics are plain fp16: stat_groupsize is 1 and
// scale = scale_scale, zero = zero_scale.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf.h"

namespace engine {

struct SpqrParams {
  int wbits = 3;
  int groupsize = 16;
  int stat_bits = 3;
  int stat_groupsize = 16;
  void validate() const;  // throws Error on impossible settings
};

// Second-level statistics of one (row group, column group).
struct SpqrStats2 {
  uint16_t scale_scale, scale_zero, zero_scale, zero_zero;  // fp16
};

struct SpqrLayer {
  SpqrParams p;
  int64_t rows = 0, cols = 0;
  int64_t n_groups = 0;       // ceil(cols / groupsize)
  int64_t group_bytes = 0;    // ceil(groupsize * wbits / 8)
  int64_t n_row_groups = 0;   // ceil(rows / stat_groupsize)
  // Views (into a GGUF mapping, or into the owned vectors below).
  const uint8_t* codes = nullptr;        // [rows][n_groups][group_bytes], little-endian bit stream
  const uint8_t* stats = nullptr;        // [rows][n_groups]: scale code | zero code << 4
  const SpqrStats2* stats2 = nullptr;    // [n_row_groups][n_groups]
  const int32_t* perm = nullptr;         // [cols]: stored column -> original column
  const int32_t* outlier_rowptr = nullptr;  // [rows + 1]
  const uint32_t* outliers = nullptr;       // [n_outliers]: stored column << 16 | fp16 value
  int64_t n_outliers = 0;

  // value − dequantized code at each outlier, in f32, derived once on load: the
  // kernels add delta·x per outlier instead of re-deriving the group statistics.
  std::vector<float> outlier_delta;
  // What the 1-token int8 kernel reads per outlier, 4 bytes as `outliers` is: the
  // stored column (low 16 bits) and the delta rounded to f16 (high 16 bits).
  // That kernel already rounds activations to int8; the delta's f16 rounding
  // (2^-11 of it) is far smaller (docs/spqr-format.md).
  std::vector<uint32_t> outlier_col_delta16;
  bool outlier_delta16_finite = true;  // false when a delta is beyond f16's range
  void derive_outlier_deltas();
  // The codes and first-level statistics re-laid for the AVX2 int8 1-token kernel
  // (cpu/spqr_decode_avx2.cpp), built by it on first use and shared by copies.
  mutable std::shared_ptr<const uint8_t> decode_avx2_packed;

  // Owned storage when built in memory (by the quantizer or a test).
  std::vector<uint8_t> codes_buf, stats_buf;
  std::vector<SpqrStats2> stats2_buf;
  std::vector<int32_t> perm_buf, rowptr_buf;
  std::vector<uint32_t> outliers_buf;
  void point_to_owned();

  // The code of stored column c (0 <= c < cols) of row r.
  int code(int64_t r, int64_t c) const;
  float scale(int64_t r, int64_t g) const;
  float zero(int64_t r, int64_t g) const;
  // Row r of the dense weight, in original column order (outliers exact). For tests and tools.
  void dequantize_row(int64_t r, float* out) const;
  // Bits per parameter, counted as the paper does: codes, both statistics levels,
  // outliers (value + index, 32 bits each) and the permutation.
  double bits_per_param() const;
  size_t storage_bytes() const;

  // GGUF: tensors "<base>.spqr_codes", ".spqr_stats", ".spqr_stats2", ".spqr_perm",
  // ".spqr_outlier_rowptr", ".spqr_outliers". `base` is e.g. "blk.0.attn_q".
  void add_to(GGUFWriter& w, const std::string& base) const;  // the layer must outlive the write
  static bool present(const GGUFFile& f, const std::string& base);
  static SpqrLayer from_gguf(const GGUFFile& f, const std::string& base, int64_t rows, int64_t cols);
};

// Model-wide SpQR metadata keys.
constexpr const char* kSpqrVersionKey = "spqr.format_version";
constexpr int kSpqrVersion = 1;
void spqr_write_params(GGUFWriter& w, const SpqrParams& p, const std::string& method);
SpqrParams spqr_read_params(const GGUFFile& f);

}  // namespace engine
