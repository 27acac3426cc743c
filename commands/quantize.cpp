// engine quantize: SpQR (or the GPTQ / RTN baselines) on a float GGUF model,
// calibrated on a text file; writes a GGUF the same loader reads.
#include <chrono>
#include <cstdio>

#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "models/tokenizer.h"
#include "quant/quantize_model.h"

using namespace engine;

// --head-type / --embd-type: a type name or "keep". The head is multiplied every
// token, so only types the matmuls run on (Q6_K among them); the embedding is read a
// row at a time, so Q4_0 too.
static void parse_table_type(const char* flag, const std::string& v, bool embedding, DType* type, bool* keep) {
  *keep = v == "keep";
  if (*keep) return;
  const bool ok = embedding ? dtype_from_name_storage(v, type) : dtype_from_name_head(v, type);
  if (!ok)
    throw Error(std::string("unknown ") + flag + " '" + v + "' (" +
                (embedding ? "q4_0, q8_0, f16, bf16, f32 or keep" : "q6_k, q8_0, f16, bf16, f32 or keep") + ")");
}

static int cmd_quantize(int argc, char** argv) {
  std::string in, out, calib, method = "spqr", perm = "act-order", head_type = "q6_k", embd_type = "q4_0";
  QuantizeModelOptions opt;
  // τ 0.3, not the paper's 0.2: it flags about 0.8% of the weights instead of 1.7%
  // (0.3 bits per parameter less) for a KL divergence 12% higher on stories260K, and
  // is what brings the default 3-bit file below llama.cpp's Q4_0 of the same model
  // (docs/spqr-quality.md, bench/NOTES.md).
  opt.cfg.outlier_threshold = 0.3f;
  int threads = 0;
  bool json = false;
  uint64_t seed = 0;
  ArgParser p("quantize", "Compress a float GGUF model with SpQR (3-4 bit weights, bilevel statistics, fp16 outliers).");
  p.add("-m,--model", "IN", "input GGUF (F32, F16, BF16 or Q8_0)", &in, true);
  p.add("-o,--output", "OUT", "output GGUF", &out, true);
  p.add("--calib", "FILE", "calibration text", &calib, true);
  p.add("--nsamples", "N", "calibration sequences", &opt.nsamples);
  p.add("--seqlen", "L", "tokens per calibration sequence", &opt.seqlen);
  p.add("--wbits", "B", "bits per weight", &opt.cfg.p.wbits);
  p.add("--groupsize", "G", "input columns per first-level group (beta1)", &opt.cfg.p.groupsize);
  p.add("--stat-bits", "B", "bits of the quantized scales and zeros (16: plain fp16)", &opt.cfg.p.stat_bits);
  p.add("--stat-groupsize", "G", "output rows per second-level group (beta2)", &opt.cfg.p.stat_groupsize);
  p.add("--outlier-threshold", "T", "outlier threshold, relative to the layer's mean error scale (SpQR; default 0.3)", &opt.cfg.outlier_threshold);
  p.add("--perm", "P", "column order: act-order or identity", &perm);
  p.add("--stat-search", "N", "SpQR: search each row's statistics codes within +-N (0-4) of the rounded ones (0: plain rounding)",
        &opt.cfg.stat_search);
  p.add("--percdamp", "X", "Hessian damping, relative to its mean diagonal", &opt.cfg.percdamp);
  p.add("--method", "M", "spqr, gptq (no outliers, fp16 statistics) or rtn (no error feedback)", &method);
  p.add("--head-type", "T",
        "store the output head as q6_k (default; q8_0 where rows are not whole 256-value blocks), q8_0, f16, bf16, "
        "f32 or keep (as in the input)",
        &head_type);
  p.add("--embd-type", "T",
        "store the token embedding as q4_0 (default; a tied model: the head's type), q8_0, f16, bf16, f32 or keep",
        &embd_type);
  p.add("--seed", "S", "seed for choosing calibration windows", &seed);
  p.add("-t,--threads", "N", "threads (default: all cores)", &threads);
  p.flag("--json", "print the report as JSON on stdout", &json);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    if (!quant_method_from_name(method, &opt.cfg.method)) throw Error("unknown --method '" + method + "' (spqr, gptq, rtn)");
    if (perm != "act-order" && perm != "identity") throw Error("--perm is act-order or identity");
    opt.cfg.act_order = perm == "act-order";
    if (opt.cfg.stat_search < 0 || opt.cfg.stat_search > 4) throw Error("--stat-search is 0 to 4");
    if (opt.cfg.method == QuantMethod::GPTQ && !p.given("--stat-bits")) {
      opt.cfg.p.stat_bits = 16;  // GPTQ keeps plain fp16 statistics
      opt.cfg.p.stat_groupsize = 1;
    }
    if (opt.cfg.p.stat_bits == 16) opt.cfg.p.stat_groupsize = 1;
    opt.cfg.p.validate();
    parse_table_type("--head-type", head_type, false, &opt.head_type, &opt.keep_head);
    parse_table_type("--embd-type", embd_type, true, &opt.embd_type, &opt.keep_embd);
    opt.head_type_given = p.given("--head-type");
    opt.embd_type_given = p.given("--embd-type");
    opt.seed = seed;
    auto f = GGUFFile::open(in);
    auto tok = Tokenizer::from_gguf(*f);
    std::string text = read_file_bytes(calib);
    std::vector<int32_t> tokens = tok->encode(text, true);
    if (tok->add_bos()) opt.bos = tok->bos();
    f.reset();
    ThreadPool pool(threads);
    std::fprintf(stderr, "quantize: %s, w%d g%d s%d/%d, %d x %d calibration tokens from %s (%zu tokens)\n",
                 method.c_str(), opt.cfg.p.wbits, opt.cfg.p.groupsize, opt.cfg.p.stat_bits, opt.cfg.p.stat_groupsize,
                 opt.nsamples, opt.seqlen, calib.c_str(), tokens.size());
    auto t0 = std::chrono::steady_clock::now();
    QuantizeModelReport r = quantize_model(in, out, tokens, opt, pool, [&](int done, int total, const LayerReport& l) {
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "quantize: [%3d/%3d] %-20s %5lldx%-5lld %.3f bits, rel. error %.5f, %lld outliers, %.2fs  ETA %.0fs\n",
                   done, total, l.name.c_str(), (long long)l.rows, (long long)l.cols, l.bits, l.rel_error,
                   (long long)l.outliers, l.seconds, el / done * (total - done));
    });
    if (json) {
      std::printf("{\"method\":\"%s\",\"avg_bits\":%.4f,\"model_bits\":%.4f,\"outlier_share\":%.6f,\"seconds\":%.3f,"
                  "\"quantized_params\":%lld,\"seconds_per_mparam\":%.4f,\"layers\":[",
                  method.c_str(), r.avg_bits, r.model_bits, r.outlier_share, r.seconds, (long long)r.quantized_params,
                  r.seconds / (r.quantized_params / 1e6));
      for (size_t i = 0; i < r.layers.size(); i++) {
        const LayerReport& l = r.layers[i];
        std::printf("%s{\"name\":\"%s\",\"bits\":%.4f,\"rel_error\":%.6g,\"outliers\":%lld}", i ? "," : "", l.name.c_str(),
                    l.bits, l.rel_error, (long long)l.outliers);
      }
      std::printf("]}\n");
    } else {
      std::printf("quantized %lld parameters in %.1f s (%.3f s per million)\n", (long long)r.quantized_params, r.seconds,
                  r.seconds / (r.quantized_params / 1e6));
      std::printf("average bits per quantized parameter: %.3f; whole file: %.3f bits per parameter\n", r.avg_bits,
                  r.model_bits);
      std::printf("outliers: %.3f%% of quantized weights\n", 100 * r.outlier_share);
      std::printf("wrote %s\n", out.c_str());
    }
    return 0;
  });
}

ENGINE_COMMAND("quantize", "compress a model with SpQR (or GPTQ / RTN baselines)", cmd_quantize);
