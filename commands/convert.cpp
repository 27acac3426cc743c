// engine convert: rewrite a model's weight matrices in another type
// (F32, F16, BF16, Q8_0). Norms and other vectors stay F32, as in llama.cpp.
#include <cstdio>
#include <memory>

#include "core/cli.h"
#include "core/error.h"
#include "core/gguf.h"

using namespace engine;

static int cmd_convert(int argc, char** argv) {
  std::string in, out, type_name;
  ArgParser p("convert", "Convert a GGUF model's weight matrices to another type (metadata is kept).");
  p.add("-m,--model", "IN", "input GGUF", &in, true);
  p.add("-o,--output", "OUT", "output GGUF", &out, true);
  p.add("--type", "T", "f32, f16, bf16 or q8_0", &type_name, true);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    DType type;
    if (!dtype_from_name(type_name, &type)) throw Error("unknown --type '" + type_name + "' (f32, f16, bf16, q8_0)");
    if (in == out) throw Error("input and output are the same file");
    auto f = GGUFFile::open(in);
    GGUFWriter w(f->alignment());
    w.copy_metadata(*f);
    int converted = 0, kept = 0, fallback = 0;
    for (auto& t : f->tensors()) {
      DType target = t.type;
      // Matrices convert; vectors (norms, biases) stay as they are, and so does a
      // mixture-of-experts router (ffn_gate_inp), as llama.cpp's quantize keeps it:
      // it is tiny, and its rounding would move tokens to other experts.
      const bool router = t.name.find("ffn_gate_inp.weight") != std::string::npos;
      // The parts of a SpQR layer (integer codes, statistics, outliers) are not float
      // matrices: they are kept, so a quantized model's embedding and head can be
      // converted (to f16, say) while its blocks stay SpQR.
      const bool numeric = t.type == DType::F32 || t.type == DType::F16 || t.type == DType::BF16 ||
                           t.type == DType::Q8_0 || t.type == DType::Q4_0 || t.type == DType::Q6_K;
      if (t.n_dims >= 2 && !router && numeric && t.name.find(".spqr_") == std::string::npos) {
        target = type;
        if (t.ne[0] % dtype_block_size(type)) {
          target = DType::F16;  // the row does not split into blocks of this type
          fallback++;
        }
      }
      if (target == t.type) {
        w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
        kept++;
        continue;
      }
      const int64_t cols = t.ne[0], rows = t.n_elements() / cols;
      std::vector<uint8_t> buf = convert_rows(t.type, t.data, target, cols, rows);
      w.add_tensor_copy(t.name, target, std::vector<int64_t>(t.ne, t.ne + t.n_dims), buf.data(), buf.size());
      converted++;
    }
    w.set_u32("general.file_type", llama_file_type(type));
    w.write(out);
    std::fprintf(stderr, "convert: %d tensors converted to %s, %d kept%s -> %s\n", converted, dtype_name(type), kept,
                 fallback ? (", " + std::to_string(fallback) + " stored as F16 (rows not a multiple of the block)").c_str()
                          : "",
                 out.c_str());
    return 0;
  });
}

ENGINE_COMMAND("convert", "convert a model's weights to F32, F16, BF16 or Q8_0", cmd_convert);
