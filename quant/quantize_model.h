// The whole-model quantization pipeline (SpQR paper §4, GPTQ's sequential
// scheme): calibration sequences run through the model block by block; the
// inputs of each block come from the blocks already quantized, and inside a
// block the linear layers are quantized in order (q,k,v → o → gate,up → down),
// each from the Hessian of its inputs with the earlier ones already quantized.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "quant/gptq.h"

namespace engine {

struct QuantizeModelOptions {
  QuantConfig cfg;
  int nsamples = 128;
  int seqlen = 512;
  uint64_t seed = 0;
  DType head_type = DType::F32;  // F32 means: keep the output head's own type
  bool head_type_given = false;
  int32_t bos = -1;  // put at the start of every calibration sequence when >= 0
};

struct QuantizeModelReport {
  std::vector<LayerReport> layers;
  double avg_bits = 0;        // over the quantized linear layers
  double model_bits = 0;      // over every parameter of the file
  double outlier_share = 0;   // outliers / quantized weights
  double seconds = 0;
  int64_t quantized_params = 0;
};

// Reads `in`, calibrates on `calib_tokens` (the calibration text tokenized with
// BOS), writes `out` atomically. `progress(layers_done, layers_total, name)`.
QuantizeModelReport quantize_model(const std::string& in, const std::string& out,
                                   const std::vector<int32_t>& calib_tokens, const QuantizeModelOptions& opt,
                                   ThreadPool& pool,
                                   const std::function<void(int, int, const LayerReport&)>& progress = nullptr);

}  // namespace engine
