#include "core/spqr.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace engine {

void SpqrParams::validate() const {
  if (wbits < 2 || wbits > 8) throw Error("--wbits must be between 2 and 8 (got " + std::to_string(wbits) + ")");
  if ((stat_bits < 1 || stat_bits > 4) && stat_bits != 16)
    throw Error("--stat-bits must be between 1 and 4, or 16 for plain fp16 statistics (got " +
                std::to_string(stat_bits) + ")");
  if (stat_bits == 16 && stat_groupsize != 1) throw Error("fp16 statistics (--stat-bits 16) need --stat-groupsize 1");
  if (groupsize < 2 || groupsize > 1024)
    throw Error("--groupsize must be between 2 and 1024 (got " + std::to_string(groupsize) + ")");
  if (stat_groupsize < 1 || stat_groupsize > 4096)
    throw Error("--stat-groupsize must be between 1 and 4096 (got " + std::to_string(stat_groupsize) + ")");
}

void SpqrLayer::point_to_owned() {
  codes = codes_buf.data();
  stats = stats_buf.data();
  stats2 = stats2_buf.data();
  perm = perm_buf.data();
  outlier_rowptr = rowptr_buf.data();
  outliers = outliers_buf.data();
  n_outliers = (int64_t)outliers_buf.size();
}

int SpqrLayer::code(int64_t r, int64_t c) const {
  const uint8_t* g = codes + ((size_t)r * n_groups + (size_t)(c / p.groupsize)) * group_bytes;
  const int64_t bit = (c % p.groupsize) * p.wbits;
  // Read up to 16 bits spanning the code (wbits <= 8), byte by byte to stay inside the group.
  uint32_t v = g[bit / 8];
  if (bit / 8 + 1 < group_bytes) v |= (uint32_t)g[bit / 8 + 1] << 8;
  return (int)((v >> (bit % 8)) & ((1u << p.wbits) - 1));
}

float SpqrLayer::scale(int64_t r, int64_t g) const {
  const SpqrStats2& s2 = stats2[(size_t)(r / p.stat_groupsize) * n_groups + g];
  if (p.stat_bits == 16) return f16_to_f32(s2.scale_scale);
  int q = stats[(size_t)r * n_groups + g] & 0x0f;
  return f16_to_f32(s2.scale_scale) * ((float)q - f16_to_f32(s2.scale_zero));
}

float SpqrLayer::zero(int64_t r, int64_t g) const {
  const SpqrStats2& s2 = stats2[(size_t)(r / p.stat_groupsize) * n_groups + g];
  if (p.stat_bits == 16) return f16_to_f32(s2.zero_scale);
  int q = stats[(size_t)r * n_groups + g] >> 4;
  return f16_to_f32(s2.zero_scale) * ((float)q - f16_to_f32(s2.zero_zero));
}

void SpqrLayer::dequantize_row(int64_t r, float* out) const {
  for (int64_t g = 0; g < n_groups; g++) {
    const float s = scale(r, g), z = zero(r, g);
    const int64_t c1 = std::min(cols, (g + 1) * p.groupsize);
    for (int64_t c = g * p.groupsize; c < c1; c++) out[perm[c]] = s * ((float)code(r, c) - z);
  }
  for (int32_t k = outlier_rowptr[r]; k < outlier_rowptr[r + 1]; k++)
    out[perm[outliers[k] >> 16]] = f16_to_f32((uint16_t)(outliers[k] & 0xffff));
}

void SpqrLayer::derive_outlier_deltas() {
  outlier_delta.resize((size_t)n_outliers);
  outlier_col_delta16.resize((size_t)n_outliers);
  outlier_delta16_finite = true;
  for (int64_t r = 0; r < rows; r++)
    for (int32_t k = outlier_rowptr[r]; k < outlier_rowptr[r + 1]; k++) {
      const int64_t c = outliers[k] >> 16, g = c / p.groupsize;
      outlier_delta[k] = f16_to_f32((uint16_t)(outliers[k] & 0xffff)) - scale(r, g) * ((float)code(r, c) - zero(r, g));
      outlier_col_delta16[k] = (uint32_t)c | (uint32_t)f32_to_f16(outlier_delta[k]) << 16;
      if (!(std::fabs(outlier_delta[k]) <= 65504.0f)) outlier_delta16_finite = false;
    }
}

double SpqrLayer::bits_per_param() const {
  const double n = (double)rows * (double)cols;
  double bits = n * p.wbits;                                      // codes
  if (p.stat_bits == 16) {
    bits += (double)rows * n_groups * 2.0 * 16.0;                // plain fp16 scale and zero
  } else {
    bits += (double)rows * n_groups * 2.0 * p.stat_bits;         // first-level scale and zero codes
    bits += (double)n_row_groups * n_groups * 4.0 * 16.0;        // second-level fp16 statistics
  }
  bits += (double)n_outliers * 32.0;                             // fp16 value + 16-bit column index
  bits += (double)cols * std::ceil(std::log2((double)std::max<int64_t>(cols, 2)));  // permutation
  return bits / n;
}

size_t SpqrLayer::storage_bytes() const {
  return (size_t)rows * n_groups * group_bytes + (size_t)rows * n_groups + (size_t)n_row_groups * n_groups * 8 +
         (size_t)cols * 4 + (size_t)(rows + 1) * 4 + (size_t)n_outliers * 4;
}

void SpqrLayer::add_to(GGUFWriter& w, const std::string& base) const {
  w.add_tensor(base + ".spqr_codes", DType::I8, {n_groups * group_bytes, rows}, codes,
               (size_t)(rows * n_groups * group_bytes));
  w.add_tensor(base + ".spqr_stats", DType::I8, {n_groups, rows}, stats, (size_t)(rows * n_groups));
  w.add_tensor(base + ".spqr_stats2", DType::F16, {4, n_groups, n_row_groups}, stats2,
               (size_t)(n_row_groups * n_groups) * sizeof(SpqrStats2));
  w.add_tensor(base + ".spqr_perm", DType::I32, {cols}, perm, (size_t)cols * 4);
  w.add_tensor(base + ".spqr_outlier_rowptr", DType::I32, {rows + 1}, outlier_rowptr, (size_t)(rows + 1) * 4);
  // GGUF tensors may not be empty-shaped; a layer without outliers stores one unused entry.
  static const uint32_t none = 0;
  if (n_outliers) w.add_tensor(base + ".spqr_outliers", DType::I32, {n_outliers}, outliers, (size_t)n_outliers * 4);
  else w.add_tensor(base + ".spqr_outliers", DType::I32, {1}, &none, 4);
}

bool SpqrLayer::present(const GGUFFile& f, const std::string& base) {
  return f.find_tensor(base + ".spqr_codes") != nullptr;
}

SpqrLayer SpqrLayer::from_gguf(const GGUFFile& f, const std::string& base, int64_t rows, int64_t cols) {
  SpqrLayer L;
  L.p = spqr_read_params(f);
  L.rows = rows;
  L.cols = cols;
  L.n_groups = (cols + L.p.groupsize - 1) / L.p.groupsize;
  L.group_bytes = (L.p.groupsize * L.p.wbits + 7) / 8;
  L.n_row_groups = (rows + L.p.stat_groupsize - 1) / L.p.stat_groupsize;
  auto get = [&](const char* suffix, DType type, int64_t n) -> const uint8_t* {
    const GGUFTensorInfo& t = f.require_tensor(base + suffix);
    if (t.type != type || t.n_elements() != n)
      f.fail("tensor '" + base + suffix + "' has the wrong type or size for a " + std::to_string(rows) + "x" +
             std::to_string(cols) + " SpQR layer");
    return t.data;
  };
  L.codes = get(".spqr_codes", DType::I8, rows * L.n_groups * L.group_bytes);
  L.stats = get(".spqr_stats", DType::I8, rows * L.n_groups);
  L.stats2 = (const SpqrStats2*)get(".spqr_stats2", DType::F16, 4 * L.n_groups * L.n_row_groups);
  L.perm = (const int32_t*)get(".spqr_perm", DType::I32, cols);
  L.outlier_rowptr = (const int32_t*)get(".spqr_outlier_rowptr", DType::I32, rows + 1);
  const GGUFTensorInfo& ot = f.require_tensor(base + ".spqr_outliers");
  if (ot.type != DType::I32) f.fail("tensor '" + base + ".spqr_outliers' must be I32");
  L.outliers = (const uint32_t*)ot.data;
  // Validate everything the kernels will index with, once, at load.
  std::vector<uint8_t> seen((size_t)cols, 0);
  for (int64_t c = 0; c < cols; c++) {
    int32_t o = L.perm[c];
    if (o < 0 || o >= cols || seen[o]++) f.fail("'" + base + ".spqr_perm' is not a permutation");
  }
  if (L.outlier_rowptr[0] != 0) f.fail("'" + base + ".spqr_outlier_rowptr' must start at 0");
  for (int64_t r = 0; r < rows; r++)
    if (L.outlier_rowptr[r + 1] < L.outlier_rowptr[r]) f.fail("'" + base + ".spqr_outlier_rowptr' decreases");
  L.n_outliers = L.outlier_rowptr[rows];
  if (L.n_outliers > ot.n_elements() || (L.n_outliers == 0 && ot.n_elements() != 1 && ot.n_elements() != 0))
    f.fail("'" + base + ".spqr_outliers' does not match its row pointers");
  for (int64_t k = 0; k < L.n_outliers; k++)
    if ((int64_t)(L.outliers[k] >> 16) >= cols) f.fail("'" + base + ".spqr_outliers' has a column out of range");
  for (int64_t i = 0; i < rows * L.n_groups; i++)
    if (L.p.stat_bits != 16 && ((L.stats[i] & 0x0f) >= (1 << L.p.stat_bits) || (L.stats[i] >> 4) >= (1 << L.p.stat_bits)))
      f.fail("'" + base + ".spqr_stats' has a code wider than stat_bits");
  L.derive_outlier_deltas();
  return L;
}

void spqr_write_params(GGUFWriter& w, const SpqrParams& p, const std::string& method) {
  w.set_u32(kSpqrVersionKey, kSpqrVersion);
  w.set_string("spqr.method", method);
  w.set_u32("spqr.wbits", (uint32_t)p.wbits);
  w.set_u32("spqr.groupsize", (uint32_t)p.groupsize);
  w.set_u32("spqr.stat_bits", (uint32_t)p.stat_bits);
  w.set_u32("spqr.stat_groupsize", (uint32_t)p.stat_groupsize);
}

SpqrParams spqr_read_params(const GGUFFile& f) {
  int64_t v = f.get_int(kSpqrVersionKey, -1);
  if (v != kSpqrVersion)
    f.fail("SpQR tensors present but " + std::string(kSpqrVersionKey) + " is " + std::to_string(v) + " (expected " +
           std::to_string(kSpqrVersion) + ")");
  SpqrParams p;
  p.wbits = (int)f.require_int("spqr.wbits");
  p.groupsize = (int)f.require_int("spqr.groupsize");
  p.stat_bits = (int)f.require_int("spqr.stat_bits");
  p.stat_groupsize = (int)f.require_int("spqr.stat_groupsize");
  try {
    p.validate();
  } catch (const Error& e) {
    f.fail(std::string("bad SpQR parameters: ") + e.what());
  }
  return p;
}

}  // namespace engine
