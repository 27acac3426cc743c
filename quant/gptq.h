// One linear layer through GPTQ-style quantization with SpQR's extensions
// (bilevel statistics, leave-one-out outlier detection, per-weight outliers),
// following the SpQR paper and its reference code; RTN and plain GPTQ are the
// baselines measured with the same code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/spqr.h"
#include "core/thread_pool.h"

namespace engine {

enum class QuantMethod { SpQR, GPTQ, RTN };
bool quant_method_from_name(const std::string& s, QuantMethod* m);
const char* quant_method_name(QuantMethod m);

struct QuantConfig {
  QuantMethod method = QuantMethod::SpQR;
  SpqrParams p;                    // for GPTQ, stat_bits is 16 (fp16 statistics)
  float outlier_threshold = 0.2f;  // τ relative to the layer's mean error scale (SpQR only)
  bool act_order = true;           // permute columns by diag(H), descending
  float percdamp = 1.0f;           // H_ii += percdamp · mean(diag H)
  int blocksize = 128;             // lazy-batch width of the error feedback
  // SpQR with bilevel statistics only: after the min-max fit of the statistics and their second-level
  // quantization, each row's (scale code, zero code) is searched within ±stat_search
  // of the rounded codes for the smallest Hessian-weighted error of its group (0: the
  // paper's plain rounding). Same format, same bits; on stories260K it cuts the KL
  // divergence to F32 by a quarter (docs/spqr-quality.md).
  int stat_search = 1;
};

struct LayerReport {
  std::string name;
  int64_t rows = 0, cols = 0;
  double bits = 0;            // per parameter, as the paper counts
  double rel_error = 0;       // ‖ΔW X‖² / ‖W X‖², measured with H (on up to 64 rows)
  int64_t outliers = 0;
  double seconds = 0;
};

// Quantizes W [rows][cols] (f32, row-major, original column order) given the
// layer's input Hessian H [cols][cols] (H = 2/N Σ x xᵀ; unused by RTN). On
// return W holds the dequantized weights, exactly what the kernels compute.
SpqrLayer quantize_layer(std::vector<float>& W, int64_t rows, int64_t cols, const std::vector<double>& H,
                         const QuantConfig& cfg, ThreadPool& pool, LayerReport* report);

}  // namespace engine
