// engine init-model: a random-weight Llama model in llama.cpp's GGUF layout
// (Mixtral's mixture-of-experts layout with --experts),
// for tests, benchmarks and the demo. Deterministic for a given --seed,
// whatever the thread count (each row has its own random stream).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/cli.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/split_mix.h"
#include "core/thread_pool.h"
#include "models/byte_vocab.h"

using namespace engine;

namespace {

// Bijective base-26 word for k: a, b, ..., z, aa, ab, ...
std::string word(uint64_t k) {
  std::string w;
  k++;
  while (k) {
    k--;
    w.insert(w.begin(), (char)('a' + k % 26));
    k /= 26;
  }
  return w;
}

// A usable SentencePiece-style vocab: the byte vocabulary (so any text tokenizes
// through byte fallback), then made-up words with and without a leading ▁.
void synthetic_vocab(GGUFWriter& w, int64_t n_vocab) {
  std::vector<std::pair<std::string, float>> words;
  for (int64_t k = 0; kByteVocabSize + (int64_t)words.size() < n_vocab; k++)
    words.emplace_back((k % 2 ? "" : "\xe2\x96\x81") + word((uint64_t)k / 2), -(float)k);
  set_byte_vocab(w, words);
}

}  // namespace

static int cmd_init_model(int argc, char** argv) {
  int64_t dim = 256, ffn = 0, layers = 4, heads = 8, kv_heads = 0, vocab = 512, ctx = 2048, experts = 0,
          experts_used = 2;
  std::string type_name = "f16", vocab_from, out;
  uint64_t seed = 42;
  int threads = 0;
  float rope_base = 10000.0f, init_std = 0.02f;
  bool tied = false;
  ArgParser p("init-model", "Write a random-weight Llama model in llama.cpp's GGUF layout (for tests, benchmarks, demos).");
  p.add("--dim", "D", "embedding width", &dim);
  p.add("--ffn", "F", "feed-forward width (default: 8/3 of dim, rounded up to 32)", &ffn);
  p.add("--layers", "L", "number of blocks", &layers);
  p.add("--heads", "H", "attention heads", &heads);
  p.add("--kv-heads", "K", "key/value heads (default: = heads)", &kv_heads);
  p.add("--experts", "E", "mixture of experts: E SwiGLU experts of width --ffn per block (Mixtral layout; 0 = dense)",
        &experts);
  p.add("--experts-used", "K", "experts each token uses (with --experts)", &experts_used);
  p.add("--vocab", "V", "vocabulary size", &vocab);
  p.add("--ctx", "C", "training context length written to the metadata", &ctx);
  p.add("--type", "T", "weight type: f32, f16, bf16, q8_0", &type_name);
  p.add("--seed", "S", "random seed", &seed);
  p.add("--rope-base", "B", "rope.freq_base", &rope_base);
  p.add("--init-std", "X", "standard deviation of the random weights", &init_std);
  p.flag("--tied", "tie the output head to the token embedding (no output.weight)", &tied);
  p.add("--vocab-from", "GGUF", "copy the tokenizer from this GGUF (its size must equal --vocab)", &vocab_from);
  p.add("-t,--threads", "N", "threads (default: all cores)", &threads);
  p.add("-o,--output", "OUT", "output GGUF path", &out, true);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    DType type;
    if (!dtype_from_name(type_name, &type)) throw Error("unknown --type '" + type_name + "' (f32, f16, bf16, q8_0)");
    if (kv_heads == 0) kv_heads = heads;
    if (ffn == 0) ffn = ((dim * 8 / 3) + 31) / 32 * 32;
    if (dim <= 0 || ffn <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || vocab <= 0 || ctx <= 0)
      throw Error("all sizes must be positive");
    if (experts < 0 || experts > 256) throw Error("--experts " + std::to_string(experts) + " is outside 0..256");
    if (experts > 0 && (experts_used < 1 || experts_used > experts))
      throw Error("--experts-used " + std::to_string(experts_used) + " must be in 1.." + std::to_string(experts));
    if (dim % heads) throw Error("--dim must be a multiple of --heads");
    if (heads % kv_heads) throw Error("--heads must be a multiple of --kv-heads");
    const int64_t hd = dim / heads;
    if (hd % 2) throw Error("head size (dim / heads) must be even for RoPE");
    const int64_t bs = dtype_block_size(type);
    if (dim % bs || ffn % bs || (hd * heads) % bs)
      throw Error(std::string("--dim and --ffn must be multiples of ") + std::to_string(bs) + " for " + dtype_name(type));

    GGUFWriter w;
    w.set_string("general.architecture", "llama");
    w.set_string("general.name", "engine-random-" + std::to_string(dim) + "x" + std::to_string(layers));
    w.set_u32("general.file_type", llama_file_type(type));
    w.set_u32("llama.context_length", (uint32_t)ctx);
    w.set_u32("llama.embedding_length", (uint32_t)dim);
    w.set_u32("llama.feed_forward_length", (uint32_t)ffn);
    w.set_u32("llama.block_count", (uint32_t)layers);
    w.set_u32("llama.attention.head_count", (uint32_t)heads);
    w.set_u32("llama.attention.head_count_kv", (uint32_t)kv_heads);
    w.set_u32("llama.rope.dimension_count", (uint32_t)hd);
    w.set_f32("llama.rope.freq_base", rope_base);
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_u32("llama.vocab_size", (uint32_t)vocab);
    if (experts > 0) {
      w.set_u32("llama.expert_count", (uint32_t)experts);
      w.set_u32("llama.expert_used_count", (uint32_t)experts_used);
    }

    std::unique_ptr<GGUFFile> vocab_file;
    if (!vocab_from.empty()) {
      vocab_file = GGUFFile::open(vocab_from);
      const GGUFValue* toks = vocab_file->find("tokenizer.ggml.tokens");
      if (!toks) vocab_file->fail("has no tokenizer (tokenizer.ggml.tokens)");
      if ((int64_t)toks->count != vocab)
        throw Error("--vocab " + std::to_string(vocab) + " does not match the " + std::to_string(toks->count) +
                    " tokens of " + vocab_from);
      for (auto& kv : vocab_file->metadata())
        if (kv.first.rfind("tokenizer.", 0) == 0) w.set(kv.first, kv.second);
    } else {
      if (vocab < 300) throw Error("--vocab must be at least 300 for the built-in byte-fallback vocab (or use --vocab-from)");
      synthetic_vocab(w, vocab);
    }

    ThreadPool pool(threads);
    std::vector<std::shared_ptr<std::vector<uint8_t>>> keep;
    int64_t total = 0;
    // A [rows][cols] matrix of N(0, std²) values, stored as `t`.
    // With n_mat > 0, a stack of n_mat such matrices [cols, rows, n_mat] (the experts).
    auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, DType t, float std_dev, int64_t n_mat = 0) {
      const size_t rb = dtype_row_bytes(t, cols);
      const int64_t one = rows;
      rows *= std::max<int64_t>(n_mat, 1);
      auto buf = std::make_shared<std::vector<uint8_t>>(rb * (size_t)rows);
      const uint64_t base = seed * 0x2545F4914F6CDD1Dull ^ name_hash(name);
      pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        std::vector<float> row((size_t)cols);
        for (int64_t r = r0; r < r1; r++) {
          SplitMix g{base + (uint64_t)r * 0x9E3779B97F4A7C15ull};
          for (auto& x : row) x = g.normal() * std_dev;
          quantize_row(t, row.data(), buf->data() + rb * (size_t)r, cols);
        }
      });
      if (n_mat > 0) w.add_tensor(name, t, {cols, one, n_mat}, buf->data(), buf->size());
      else w.add_tensor(name, t, {cols, rows}, buf->data(), buf->size());
      keep.push_back(buf);
      total += rows * cols;
    };
    auto ones = [&](const std::string& name, int64_t n) {
      std::vector<float> v((size_t)n, 1.0f);
      w.add_tensor_copy(name, DType::F32, {n}, v.data(), v.size() * 4);
      total += n;
    };
    std::fprintf(stderr, "init-model: %lld blocks, dim %lld, ffn %lld, %s weights\n", (long long)layers,
                 (long long)dim, (long long)ffn, dtype_name(type));
    matrix("token_embd.weight", vocab, dim, type, init_std);
    ones("output_norm.weight", dim);
    if (!tied) matrix("output.weight", vocab, dim, type, init_std);
    // Residual projections are scaled down with depth (GPT-2's rule) so activations stay tame.
    const float proj_std = init_std / std::sqrt(2.0f * (float)layers);
    for (int64_t b = 0; b < layers; b++) {
      const std::string pre = "blk." + std::to_string(b) + ".";
      ones(pre + "attn_norm.weight", dim);
      matrix(pre + "attn_q.weight", heads * hd, dim, type, init_std);
      matrix(pre + "attn_k.weight", kv_heads * hd, dim, type, init_std);
      matrix(pre + "attn_v.weight", kv_heads * hd, dim, type, init_std);
      matrix(pre + "attn_output.weight", dim, heads * hd, type, proj_std);
      ones(pre + "ffn_norm.weight", dim);
      if (experts > 0) {
        // The router stays F32, as llama.cpp's quantize keeps ffn_gate_inp.
        matrix(pre + "ffn_gate_inp.weight", experts, dim, DType::F32, init_std);
        matrix(pre + "ffn_gate_exps.weight", ffn, dim, type, init_std, experts);
        matrix(pre + "ffn_up_exps.weight", ffn, dim, type, init_std, experts);
        matrix(pre + "ffn_down_exps.weight", dim, ffn, type, proj_std, experts);
      } else {
        matrix(pre + "ffn_gate.weight", ffn, dim, type, init_std);
        matrix(pre + "ffn_up.weight", ffn, dim, type, init_std);
        matrix(pre + "ffn_down.weight", dim, ffn, type, proj_std);
      }
      std::fprintf(stderr, "\rinit-model: block %lld/%lld", (long long)b + 1, (long long)layers);
    }
    std::fprintf(stderr, "\ninit-model: writing %s (%.1f M parameters)\n", out.c_str(), total / 1e6);
    w.write(out);
    return 0;
  });
}

ENGINE_COMMAND("init-model", "write a random-weight Llama model (for tests and benchmarks)", cmd_init_model);
