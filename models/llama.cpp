#include "models/llama.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/llama_moe.h"

namespace engine {

bool llama_arch_supported(const std::string& arch, cpu::RopeLayout* layout) {
  // Architectures whose blocks are the Llama block (RMSNorm, RoPE, GQA, SwiGLU).
  struct Arch {
    const char* name;
    cpu::RopeLayout rope;
  };
  static const Arch archs[] = {
      {"llama", cpu::RopeLayout::Adjacent},
      {"mistral", cpu::RopeLayout::Adjacent},
      {"granite", cpu::RopeLayout::Adjacent},
      {"qwen2", cpu::RopeLayout::NeoX},
  };
  for (auto& a : archs)
    if (arch == a.name) {
      if (layout) *layout = a.rope;
      return true;
    }
  return false;
}

LlamaHParams LlamaHParams::from_gguf(const GGUFFile& f) {
  LlamaHParams hp;
  if (f.tensors().empty()) f.fail("has no tensors: not a model file (a vocab-only file?)");
  hp.arch = f.get_string("general.architecture");
  if (hp.arch.empty()) f.fail("no general.architecture: not a model file (a vocab-only file?)");
  if (!llama_arch_supported(hp.arch, &hp.rope_layout))
    f.fail("unknown model architecture '" + hp.arch + "' (supported: llama, mistral, granite, qwen2)");
  const std::string p = hp.arch + ".";
  hp.n_embd = f.require_int(p + "embedding_length");
  hp.n_ff = f.require_int(p + "feed_forward_length");
  hp.n_layer = f.require_int(p + "block_count");
  hp.n_head = f.require_int(p + "attention.head_count");
  hp.n_head_kv = f.get_int(p + "attention.head_count_kv", hp.n_head);
  hp.n_ctx_train = f.get_int(p + "context_length", 2048);
  hp.rms_eps = (float)f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-5);
  hp.rope_freq_base = (float)f.get_float(p + "rope.freq_base", 10000.0);
  auto positive = [&](int64_t v, const char* what, int64_t max) {
    if (v <= 0 || v > max) f.fail(std::string("bad ") + what + " " + std::to_string(v));
  };
  positive(hp.n_embd, "embedding_length", 1 << 20);
  positive(hp.n_ff, "feed_forward_length", 1 << 22);
  positive(hp.n_layer, "block_count", 4096);
  positive(hp.n_head, "attention.head_count", 1 << 14);
  positive(hp.n_head_kv, "attention.head_count_kv", 1 << 14);
  positive(hp.n_ctx_train, "context_length", 1 << 24);
  if (hp.n_embd % hp.n_head) f.fail("embedding_length is not a multiple of head_count");
  if (hp.n_head % hp.n_head_kv) f.fail("head_count is not a multiple of head_count_kv");
  hp.head_dim = f.get_int(p + "attention.key_length", hp.n_embd / hp.n_head);
  positive(hp.head_dim, "attention.key_length", 1 << 14);
  hp.n_rot = f.get_int(p + "rope.dimension_count", hp.head_dim);
  if (hp.n_rot <= 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2) f.fail("bad rope.dimension_count");
  // Mixtral: expert_count experts per block, expert_used_count of them per token.
  hp.n_expert = f.get_int(p + "expert_count", 0);
  hp.n_expert_used = f.get_int(p + "expert_used_count", 0);
  if (hp.n_expert < 0 || hp.n_expert > 4096) f.fail("bad " + p + "expert_count " + std::to_string(hp.n_expert));
  if (hp.n_expert > 0 && (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert))
    f.fail("bad " + p + "expert_used_count " + std::to_string(hp.n_expert_used) + ": must be 1.." +
           std::to_string(hp.n_expert) + " (" + p + "expert_count)");
  if (hp.n_expert == 0 && hp.n_expert_used != 0)
    f.fail(p + "expert_used_count is " + std::to_string(hp.n_expert_used) + " but " + p + "expert_count is 0");
  if (!(hp.rms_eps > 0) || !(hp.rope_freq_base > 0)) f.fail("bad rms epsilon or rope.freq_base");
  // n_vocab comes from the embedding tensor, which is authoritative.
  if (const GGUFTensorInfo* te = f.find_tensor("token_embd.weight")) hp.n_vocab = te->ne[1];
  else hp.n_vocab = f.get_int(p + "vocab_size", 0);
  return hp;
}

KVCache::KVCache(const LlamaHParams& hp, int64_t first, int64_t last, int64_t ctx, DType t)
    : n_ctx(ctx), first_block(first), n_blocks(last - first), kv_dim(hp.kv_dim()), type(t) {
  if (ctx <= 0) throw Error("context size must be positive");
  if (t != DType::F16 && t != DType::F32) throw Error("the KV cache is F16 or F32");
  k.assign((size_t)(n_blocks * n_ctx) * row_bytes(), 0);
  v.assign((size_t)(n_blocks * n_ctx) * row_bytes(), 0);
}

// ---- loading ---------------------------------------------------------------------

cpu::WeightView LlamaModel::weight(const std::string& name, int64_t rows, int64_t cols) const {
  const GGUFTensorInfo& t = file_->require_tensor(name);
  if (t.n_dims != 2 || t.ne[0] != cols || t.ne[1] != rows)
    file_->fail("tensor '" + name + "' has shape [" + std::to_string(t.ne[0]) + ", " + std::to_string(t.ne[1]) +
                "], expected [" + std::to_string(cols) + ", " + std::to_string(rows) + "]");
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16 && t.type != DType::Q8_0 &&
      t.type != DType::Q6_K)
    file_->fail("tensor '" + name + "' has unsupported type " + dtype_name(t.type));
  return cpu::WeightView{t.type, rows, cols, t.data, dtype_row_bytes(t.type, cols)};
}

cpu::Linear LlamaModel::linear(const std::string& base, int64_t rows, int64_t cols) {
  cpu::Linear l;
  if (SpqrLayer::present(*file_, base)) {
    spqr_.push_back(std::make_unique<SpqrLayer>(SpqrLayer::from_gguf(*file_, base, rows, cols)));
    l.spqr = spqr_.back().get();
  } else {
    l.dense = weight(base + ".weight", rows, cols);
  }
  return l;
}

std::vector<cpu::Linear> LlamaModel::expert_linears(const std::string& base, int64_t rows, int64_t cols) {
  const int64_t E = hp_.n_expert;
  std::vector<cpu::Linear> out((size_t)E);
  if (SpqrLayer::present(*file_, base + ".0")) {
    for (int64_t e = 0; e < E; e++) out[e] = linear(base + "." + std::to_string(e), rows, cols);
    return out;
  }
  const std::string name = base + ".weight";
  const GGUFTensorInfo& t = file_->require_tensor(name);
  if (t.n_dims != 3 || t.ne[0] != cols || t.ne[1] != rows || t.ne[2] != E) {
    std::string shape;
    for (uint32_t i = 0; i < t.n_dims; i++) shape += (i ? ", " : "") + std::to_string(t.ne[i]);
    file_->fail("tensor '" + name + "' has shape [" + shape + "], expected [" + std::to_string(cols) + ", " +
                std::to_string(rows) + ", " + std::to_string(E) + "] (n_expert stacked matrices)");
  }
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16 && t.type != DType::Q8_0)
    file_->fail("tensor '" + name + "' has unsupported type " + dtype_name(t.type));
  const size_t rb = dtype_row_bytes(t.type, cols);
  for (int64_t e = 0; e < E; e++) out[e].dense = cpu::WeightView{t.type, rows, cols, t.data + (size_t)(e * rows) * rb, rb};
  return out;
}

const float* LlamaModel::norm_vector(const std::string& name, int64_t n) {
  const GGUFTensorInfo& t = file_->require_tensor(name);
  if (t.n_elements() != n) file_->fail("tensor '" + name + "' should have " + std::to_string(n) + " elements");
  if (t.type == DType::F32 && ((uintptr_t)t.data % alignof(float)) == 0) return (const float*)t.data;
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16)
    file_->fail("tensor '" + name + "' has unsupported type " + dtype_name(t.type));
  owned_.emplace_back((size_t)n);
  dequantize_row(t.type, t.data, owned_.back().data(), n);
  return owned_.back().data();
}

std::unique_ptr<LlamaModel> LlamaModel::load(std::shared_ptr<const GGUFFile> file, const LlamaLoadOptions& opts) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->file_ = std::move(file);
  const GGUFFile& f = *m->file_;
  m->hp_ = LlamaHParams::from_gguf(f);
  const LlamaHParams& hp = m->hp_;
  m->first_ = opts.first_block;
  m->last_ = opts.last_block < 0 ? hp.n_layer : opts.last_block;
  if (m->first_ < 0 || m->first_ > m->last_ || m->last_ > hp.n_layer)
    throw Error("block span [" + std::to_string(m->first_) + ", " + std::to_string(m->last_) +
                ") is outside the model's " + std::to_string(hp.n_layer) + " blocks");

  if (opts.embeddings || opts.head) {
    m->tok_embd_ = &f.require_tensor("token_embd.weight");
    if (m->tok_embd_->n_dims != 2 || m->tok_embd_->ne[0] != hp.n_embd)
      f.fail("token_embd.weight should have shape [n_embd, n_vocab]");
  }
  if (opts.head) {
    m->output_norm_ = m->norm_vector("output_norm.weight", hp.n_embd);
    // Tied embeddings: without output.weight the head reuses the token embedding.
    const char* out_name = f.find_tensor("output.weight") ? "output.weight" : "token_embd.weight";
    m->output_ = m->weight(out_name, hp.n_vocab, hp.n_embd);
  }
  for (int64_t b = m->first_; b < m->last_; b++) {
    const std::string p = "blk." + std::to_string(b) + ".";
    LlamaBlockWeights w;
    w.attn_norm = m->norm_vector(p + "attn_norm.weight", hp.n_embd);
    w.ffn_norm = m->norm_vector(p + "ffn_norm.weight", hp.n_embd);
    w.wq = m->linear(p + "attn_q", hp.q_dim(), hp.n_embd);
    w.wk = m->linear(p + "attn_k", hp.kv_dim(), hp.n_embd);
    w.wv = m->linear(p + "attn_v", hp.kv_dim(), hp.n_embd);
    w.wo = m->linear(p + "attn_output", hp.n_embd, hp.q_dim());
    if (hp.moe()) {
      w.router = m->linear(p + "ffn_gate_inp", hp.n_expert, hp.n_embd);
      w.exp_gate = m->expert_linears(p + "ffn_gate_exps", hp.n_ff, hp.n_embd);
      w.exp_up = m->expert_linears(p + "ffn_up_exps", hp.n_ff, hp.n_embd);
      w.exp_down = m->expert_linears(p + "ffn_down_exps", hp.n_embd, hp.n_ff);
    } else {
      if (f.find_tensor(p + "ffn_gate_inp.weight"))
        f.fail("has mixture-of-experts tensors ('" + p + "ffn_gate_inp.weight') but no " + hp.arch +
               ".expert_count");
      w.w_gate = m->linear(p + "ffn_gate", hp.n_ff, hp.n_embd);
      w.w_up = m->linear(p + "ffn_up", hp.n_ff, hp.n_embd);
      w.w_down = m->linear(p + "ffn_down", hp.n_embd, hp.n_ff);
    }
    if (f.find_tensor(p + "attn_q.bias")) {
      w.bq = m->norm_vector(p + "attn_q.bias", hp.q_dim());
      w.bk = m->norm_vector(p + "attn_k.bias", hp.kv_dim());
      w.bv = m->norm_vector(p + "attn_v.bias", hp.kv_dim());
    }
    m->blocks_.push_back(w);
  }
  return m;
}

// ---- forward -----------------------------------------------------------------------

void LlamaModel::embed(const int32_t* tokens, int64_t n, float* hidden) const {
  if (!tok_embd_) throw Error("model was loaded without embeddings");
  const size_t row_bytes = dtype_row_bytes(tok_embd_->type, hp_.n_embd);
  for (int64_t t = 0; t < n; t++) {
    if (tokens[t] < 0 || tokens[t] >= hp_.n_vocab)
      throw Error("token id " + std::to_string(tokens[t]) + " is outside the vocabulary (" +
                  std::to_string(hp_.n_vocab) + ")");
    dequantize_row(tok_embd_->type, tok_embd_->data + (size_t)tokens[t] * row_bytes, hidden + t * hp_.n_embd,
                   hp_.n_embd);
  }
}

static float* grow(std::vector<float>& v, int64_t n) {
  if ((int64_t)v.size() < n) v.resize((size_t)n);
  return v.data();
}

static void add_bias(float* x, const float* b, int64_t n, int64_t d) {
  if (!b) return;
  for (int64_t t = 0; t < n; t++) cpu::add_inplace(x + t * d, b, d);
}

// The element-wise steps of a prefill, split over the pool by tokens: fn(first
// token, count). Alone they are a few percent of a 2-thread prefill, all of it on
// one thread while the other waits; a decode step (n below 2 × 8) stays on the caller.
template <typename Fn>
static void per_token(ThreadPool& pool, int64_t n, const Fn& fn) {
  pool.parallel_for(n, 8, [&](int64_t t0, int64_t t1) { fn(t0, t1 - t0); });
}

// One Llama block on x [n][n_embd], in place:
//   x += Wo · attn(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
//   x += Wdown · (silu(Wgate·norm(x)) * Wup·norm(x))
// in llama.cpp's arithmetic where it has one (rope_ggml, swiglu_ggml, and through
// cpu/matmul_ggml.h F32 weights and the F16 cache's attention): an F32 model with
// the default F16 cache gives llama.cpp's logits bit for bit (bench/NOTES.md).
void llama_block_forward(const LlamaHParams& hp, const LlamaBlockWeights& w, KVCache& cache, int64_t b, float* x,
                         int64_t n, ThreadPool& pool, const BlockTapFn& tap, int64_t n_out) {
  const int64_t d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), pos0 = cache.n_past;
  if (n_out < 0 || n_out > n || tap) n_out = n;
  // The first `skip` tokens' outputs are not read: they still need their keys and
  // values (the cache) and, as in llama.cpp, their attention rows; the
  // feed-forward half runs on the last n_out tokens only.
  const int64_t skip = n - n_out;

  // Activations in per-thread buffers that only grow: fresh vectors of a prefill's
  // size (MBs) cost page faults and zeroing on every block. They keep the largest
  // batch's size (as llama.cpp keeps its compute buffer).
  thread_local std::vector<float> hb, qb, attb, tmpb, kb, vb, gb, ub;
  float* const h = grow(hb, n * d);
  float* const q = grow(qb, n * qd);
  float* const att = grow(attb, n * qd);
  float* const tmp = grow(tmpb, n * d);
  float* const k = grow(kb, n * kvd);
  float* const v = grow(vb, n * kvd);
  std::vector<int32_t> pos((size_t)n);
  for (int64_t t = 0; t < n; t++) pos[t] = (int32_t)(pos0 + t);

  per_token(pool, n, [&](int64_t t, int64_t m) { cpu::rmsnorm(x + t * d, w.attn_norm, h + t * d, m, d, hp.rms_eps); });
  if (tap) tap(BlockTap::AttnIn, -1, h, n, d);
  cpu::linear_same_input({{&w.wq, q}, {&w.wk, k}, {&w.wv, v}}, h, n, pool);
  add_bias(q, w.bq, n, qd);
  add_bias(k, w.bk, n, kvd);
  add_bias(v, w.bv, n, kvd);
  per_token(pool, n, [&](int64_t t, int64_t m) {
    cpu::rope_ggml(q + t * qd, m, hp.n_head, hp.head_dim, hp.n_rot, pos.data() + t, hp.rope_freq_base, hp.rope_layout);
    cpu::rope_ggml(k + t * kvd, m, hp.n_head_kv, hp.head_dim, hp.n_rot, pos.data() + t, hp.rope_freq_base,
                   hp.rope_layout);
  });
  // Keys and values of positions pos0 .. pos0+n-1 join the cache, in its type.
  const size_t rb = cache.row_bytes();
  quantize_row(cache.type, k, cache.k_block(b) + pos0 * rb, n * kvd);
  quantize_row(cache.type, v, cache.v_block(b) + pos0 * rb, n * kvd);
  cpu::attention(q, cache.k_block(b), cache.v_block(b), cache.type, att, n, pos0, hp.n_head,
                 hp.n_head_kv, hp.head_dim, pool);
  if (tap) tap(BlockTap::AttnOut, -1, att, n, qd);
  cpu::linear(w.wo, att, n, tmp, pool);
  per_token(pool, n, [&](int64_t t, int64_t m) { cpu::add_inplace(x + t * d, tmp + t * d, m * d); });

  x += skip * d;
  n = n_out;
  per_token(pool, n, [&](int64_t t, int64_t m) { cpu::rmsnorm(x + t * d, w.ffn_norm, h + t * d, m, d, hp.rms_eps); });
  if (tap) tap(BlockTap::FfnIn, -1, h, n, d);
  if (hp.moe()) {
    moe_ffn_forward(hp, w, h, n, tmp, pool, tap);
  } else {
    float* const g = grow(gb, n * hp.n_ff);
    float* const u = grow(ub, n * hp.n_ff);
    cpu::linear_same_input({{&w.w_gate, g}, {&w.w_up, u}}, h, n, pool);
    per_token(pool, n, [&](int64_t t, int64_t m) {
      cpu::swiglu_ggml(g + t * hp.n_ff, u + t * hp.n_ff, g + t * hp.n_ff, m, hp.n_ff);
    });
    if (tap) tap(BlockTap::FfnAct, -1, g, n, hp.n_ff);
    cpu::linear(w.w_down, g, n, tmp, pool);
  }
  per_token(pool, n, [&](int64_t t, int64_t m) { cpu::add_inplace(x + t * d, tmp + t * d, m * d); });
}

void LlamaModel::forward_span(int64_t a, int64_t b, KVCache& cache, float* hidden, int64_t n, ThreadPool& pool,
                              int64_t n_out) const {
  if (a < first_ || b > last_ || a > b) throw Error("span outside the loaded blocks");
  if (a < cache.first_block || b > cache.first_block + cache.n_blocks) throw Error("KV cache does not cover the span");
  if (n <= 0) return;
  if (cache.n_past + n > cache.n_ctx)
    throw Error("context is full: " + std::to_string(cache.n_past + n) + " positions needed, " +
                std::to_string(cache.n_ctx) + " available (raise -c)");
  for (int64_t blk = a; blk < b; blk++)
    llama_block_forward(hp_, blocks_[blk - first_], cache, blk, hidden, n, pool, nullptr, blk == b - 1 ? n_out : -1);
  cache.n_past += n;
}

void LlamaModel::head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const {
  if (!output_norm_) throw Error("model was loaded without the output head");
  std::vector<float> h((size_t)(n * hp_.n_embd));
  cpu::rmsnorm(hidden, output_norm_, h.data(), n, hp_.n_embd, hp_.rms_eps);
  cpu::matmul(output_, h.data(), n, logits, pool);
}

size_t LlamaModel::weight_bytes(int64_t a, int64_t b, bool with_head) const {
  size_t total = 0;
  auto bytes = [](const cpu::Linear& w) { return w.bytes(); };
  for (int64_t blk = a; blk < b; blk++) {
    const LlamaBlockWeights& w = blocks_[blk - first_];
    total += bytes(w.wq) + bytes(w.wk) + bytes(w.wv) + bytes(w.wo) + 2 * hp_.n_embd * sizeof(float);
    if (hp_.moe()) {
      // A token reads the router and n_expert_used experts: the experts' mean size times that.
      size_t experts = 0;
      for (int64_t e = 0; e < hp_.n_expert; e++) experts += bytes(w.exp_gate[e]) + bytes(w.exp_up[e]) + bytes(w.exp_down[e]);
      total += bytes(w.router) + experts / (size_t)hp_.n_expert * (size_t)hp_.n_expert_used;
    } else {
      total += bytes(w.w_gate) + bytes(w.w_up) + bytes(w.w_down);
    }
  }
  if (with_head && output_norm_) total += (size_t)output_.rows * output_.row_bytes + hp_.n_embd * sizeof(float);
  return total;
}

}  // namespace engine
