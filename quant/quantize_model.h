// The whole-model quantization pipeline (SpQR paper §4, GPTQ's sequential
// scheme): calibration sequences run through the model block by block; the
// inputs of each block come from the blocks already quantized, and inside a
// block the linear layers are quantized in order (q,k,v → o → gate,up → down),
// each from the Hessian of its inputs with the earlier ones already quantized.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "quant/gptq.h"

namespace engine {

struct QuantizeModelOptions {
  QuantConfig cfg;
  int nsamples = 128;
  int seqlen = 512;
  uint64_t seed = 0;
  // Storage of the output head and the token embedding. By default both are
  // quantized, as a llama.cpp user expects of a "3-bit model" (docs/spqr-quality.md
  // has the measured cost): the head as Q8_0 (matmul reads it every token), the
  // embedding as Q4_0 (one row is dequantized per token). keep_*: as in the input.
  DType head_type = DType::Q6_K;
  DType embd_type = DType::Q4_0;
  bool keep_head = false;
  bool keep_embd = false;
  // Given on the command line: a type whose blocks do not divide the rows is then an
  // error, where a default falls back to the input's type. A tied model's single
  // table follows the head's type unless the embedding type is given.
  bool head_type_given = false;
  bool embd_type_given = false;
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

// How the token embedding and the head are written, and whether a tied model (no
// output.weight: the head reads the embedding) needs a head of its own. Fails
// (naming the file) when a given type's blocks do not divide the table's rows.
struct EmbdPlan {
  DType type = DType::F32;       // the embedding's stored type (unused without token_embd)
  DType head_type = DType::F32;  // output.weight's (or, tied, the explicit head's)
  bool explicit_head = false;    // write output.weight for a tied model
};
EmbdPlan plan_embedding(const GGUFFile& f, const QuantizeModelOptions& opt);

// Reads `in`, calibrates on `calib_tokens` (the calibration text tokenized with
// BOS), writes `out` atomically. `progress(layers_done, layers_total, name)`.
QuantizeModelReport quantize_model(const std::string& in, const std::string& out,
                                   const std::vector<int32_t>& calib_tokens, const QuantizeModelOptions& opt,
                                   ThreadPool& pool,
                                   const std::function<void(int, int, const LayerReport&)>& progress = nullptr);

}  // namespace engine
