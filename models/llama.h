// Llama-family transformer on the CPU, organised around block spans: a server
// runs blocks [a, b) alone on hidden states; a client runs the embedding and
// the head. Weights stay in the memory-mapped GGUF; nothing is copied except
// the (tiny) norm vectors.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "core/thread_pool.h"
#include "core/spqr.h"
#include "cpu/linear.h"
#include "cpu/ops.h"

namespace engine {

struct LlamaHParams {
  std::string arch;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_rot = 0;
  int64_t n_ctx_train = 0;
  // Mixture of experts (Mixtral): n_expert > 0 replaces the FFN by n_expert SwiGLU
  // experts of width n_ff, n_expert_used of which run per token.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  cpu::RopeLayout rope_layout = cpu::RopeLayout::Adjacent;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  bool moe() const { return n_expert > 0; }
  // Reads and validates the hyper-parameters; an unknown architecture is an Error.
  static LlamaHParams from_gguf(const GGUFFile& f);
};

// Architectures we run, and their RoPE layout (GGUF does not store it; llama.cpp
// derives it from the architecture name, and so do we).
bool llama_arch_supported(const std::string& arch, cpu::RopeLayout* layout = nullptr);

struct LlamaBlockWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  const float* ffn_norm = nullptr;   // [n_embd]
  cpu::Linear wq, wk, wv, wo;        // [q_dim][n_embd], [kv_dim][n_embd] ×2, [n_embd][q_dim]
  cpu::Linear w_gate, w_up;          // [n_ff][n_embd]
  cpu::Linear w_down;                // [n_embd][n_ff]
  const float* bq = nullptr;         // optional biases (qwen2): [q_dim], [kv_dim], [kv_dim]
  const float* bk = nullptr;
  const float* bv = nullptr;
  // Mixture of experts (hp.n_expert > 0), in place of w_gate, w_up, w_down:
  cpu::Linear router;                                   // ffn_gate_inp: [n_expert][n_embd]
  std::vector<cpu::Linear> exp_gate, exp_up, exp_down;  // per expert: [n_ff][n_embd] ×2, [n_embd][n_ff]
};

// Keys and values of the blocks of one span, for one sequence. F16 by default,
// as llama.cpp: half the memory, and logits that agree with llama.cpp's.
struct KVCache {
  int64_t n_ctx = 0;  // positions it can hold
  int64_t first_block = 0;
  int64_t n_blocks = 0;
  int64_t kv_dim = 0;
  int64_t n_past = 0;  // positions already filled
  DType type = DType::F16;
  std::vector<uint8_t> k, v;  // [n_blocks][n_ctx][kv_dim] of `type`

  KVCache(const LlamaHParams& hp, int64_t first, int64_t last, int64_t n_ctx, DType type = DType::F16);
  size_t row_bytes() const { return (size_t)kv_dim * dtype_block_bytes(type); }
  uint8_t* k_block(int64_t b) { return k.data() + (size_t)((b - first_block) * n_ctx) * row_bytes(); }
  uint8_t* v_block(int64_t b) { return v.data() + (size_t)((b - first_block) * n_ctx) * row_bytes(); }
  size_t bytes() const { return k.size() + v.size(); }
  void clear() { n_past = 0; }
};

// Where the quantizer listens inside a block: the inputs of its linear layers.
enum class BlockTap {
  AttnIn,   // attn_norm(x): input of q, k, v   [n][n_embd]
  AttnOut,  // attention output: input of o     [n][q_dim]
  FfnIn,    // ffn_norm(x): input of gate, up   [n][n_embd]
  FfnAct,   // silu(gate)·up: input of down     [n][n_ff]
};
// `expert` is -1 for a dense block; in a mixture-of-experts block FfnIn comes once
// with expert -1 (the router's input, all tokens) and then, like FfnAct, once per
// expert with only the tokens routed to it (what that expert's linears see).
using BlockTapFn = std::function<void(BlockTap, int64_t expert, const float* x, int64_t n, int64_t width)>;

// One Llama block on x [n][n_embd] in place, for tokens at positions cache.n_past ..
// n_past+n-1 (the cache is not advanced; `block` selects its slot).
// n_out (1..n; -1 = n): only the last n_out rows of x are wanted afterwards, as when
// a prefill needs the last token's logits. All n tokens' keys, values and
// attention are computed; the feed-forward half runs on the last n_out rows only
// (what llama.cpp does in its last layer), and the first n - n_out rows of x are
// left part-way (after attention). Ignored when `tap` is set.
void llama_block_forward(const LlamaHParams& hp, const LlamaBlockWeights& w, KVCache& cache, int64_t block, float* x,
                         int64_t n, ThreadPool& pool, const BlockTapFn& tap = nullptr, int64_t n_out = -1);

struct LlamaLoadOptions {
  int64_t first_block = 0;
  int64_t last_block = -1;  // exclusive; -1 = all blocks
  bool embeddings = true;   // token embedding (client side)
  bool head = true;         // final norm and output projection (client side)
};

class LlamaModel {
 public:
  // The model keeps a reference to `file`: it must outlive the model.
  static std::unique_ptr<LlamaModel> load(std::shared_ptr<const GGUFFile> file, const LlamaLoadOptions& opts = {});

  const LlamaHParams& hparams() const { return hp_; }
  const GGUFFile& file() const { return *file_; }
  int64_t first_block() const { return first_; }
  int64_t last_block() const { return last_; }

  // hidden[t] = embedding of tokens[t]:  [n][n_embd]. Token ids are checked.
  void embed(const int32_t* tokens, int64_t n, float* hidden) const;

  // Runs blocks [a, b) (within the loaded span) on hidden [n][n_embd] in place, for the
  // n tokens at positions cache.n_past .. n_past+n-1, and advances cache.n_past by n.
  // The cache must cover [a, b). n_out as for llama_block_forward, applied to block
  // b - 1: only the last n_out rows of hidden are then valid.
  void forward_span(int64_t a, int64_t b, KVCache& cache, float* hidden, int64_t n, ThreadPool& pool,
                    int64_t n_out = -1) const;
  // Whole loaded span.
  void forward(KVCache& cache, float* hidden, int64_t n, ThreadPool& pool, int64_t n_out = -1) const {
    forward_span(first_, last_, cache, hidden, n, pool, n_out);
  }

  // logits [n][n_vocab] = output(norm(hidden)). `hidden` is not modified.
  void head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const;

  const LlamaBlockWeights& block(int64_t b) const { return blocks_[b - first_]; }

  // Bytes of weights a decode step reads for blocks [a, b) (+ head when asked): for bandwidth reports.
  size_t weight_bytes(int64_t a, int64_t b, bool with_head) const;

 private:
  LlamaModel() = default;
  const float* norm_vector(const std::string& name, int64_t n);
  cpu::WeightView weight(const std::string& name, int64_t rows, int64_t cols) const;
  // A block's linear layer "<base>.weight", or its SpQR form when the file has one.
  cpu::Linear linear(const std::string& base, int64_t rows, int64_t cols);
  // The n_expert matrices of a 3-D "<base>.weight" [cols, rows, n_expert], or their
  // per-expert SpQR forms "<base>.<e>" (docs/spqr-format.md).
  std::vector<cpu::Linear> expert_linears(const std::string& base, int64_t rows, int64_t cols);

  std::shared_ptr<const GGUFFile> file_;
  LlamaHParams hp_;
  int64_t first_ = 0, last_ = 0;
  std::vector<LlamaBlockWeights> blocks_;  // index b - first_
  const GGUFTensorInfo* tok_embd_ = nullptr;
  const float* output_norm_ = nullptr;
  cpu::WeightView output_{};
  std::vector<std::vector<float>> owned_;  // norm vectors converted to f32
  std::vector<std::unique_ptr<SpqrLayer>> spqr_;  // views into the mapping
};

}  // namespace engine
