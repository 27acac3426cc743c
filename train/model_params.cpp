#include "train/model_params.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "core/error.h"
#include "core/split_mix.h"
#include "core/spqr.h"
#include "cpu/ops.h"
#include "models/llama_backward.h"
#include "train/model_compute.h"

namespace engine::train {

int64_t ParamTensor::numel() const {
  int64_t n = 1;
  for (int64_t e : ne) n *= e;
  return n;
}

namespace {

// The tensors of one block, in file order, with their [rows][cols] (cols = 0: a vector)
// and, for a mixture's expert stacks, n_mat matrices of that shape (GGUF ne = [cols,
// rows, n_mat], as llama.cpp stores them).
struct BlockTensor {
  const char* suffix;
  int64_t rows, cols, n_mat = 0;
};
std::vector<BlockTensor> block_tensors(const LlamaHParams& hp) {
  const int64_t d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff, E = hp.n_expert;
  std::vector<BlockTensor> t = {{"attn_norm.weight", d, 0},   {"attn_q.weight", qd, d},
                                {"attn_k.weight", kvd, d},    {"attn_v.weight", kvd, d},
                                {"attn_output.weight", d, qd}, {"ffn_norm.weight", d, 0}};
  if (hp.moe()) {
    t.push_back({"ffn_gate_inp.weight", E, d});
    t.push_back({"ffn_gate_exps.weight", ff, d, E});
    t.push_back({"ffn_up_exps.weight", ff, d, E});
    t.push_back({"ffn_down_exps.weight", d, ff, E});
  } else {
    t.push_back({"ffn_gate.weight", ff, d});
    t.push_back({"ffn_up.weight", ff, d});
    t.push_back({"ffn_down.weight", d, ff});
  }
  return t;
}
// 9 for a dense block, 10 for a mixture's (router + 3 expert stacks in place of the FFN).
size_t block_tensor_count(const LlamaHParams& hp) { return hp.moe() ? 10 : 9; }

std::string blk(int64_t b, const char* suffix) { return "blk." + std::to_string(b) + "." + suffix; }

// Fills in what a caller may leave at 0 and checks the rest is a model we can run.
LlamaHParams normalised(LlamaHParams hp) {
  if (hp.arch.empty()) hp.arch = "llama";
  if (hp.n_head_kv == 0) hp.n_head_kv = hp.n_head;
  if (hp.n_embd <= 0 || hp.n_ff <= 0 || hp.n_layer <= 0 || hp.n_head <= 0 || hp.n_head_kv <= 0 || hp.n_vocab <= 0)
    throw Error("model shape: every size must be positive");
  if (hp.n_embd % hp.n_head) throw Error("model shape: n_embd is not a multiple of the head count");
  if (hp.n_head % hp.n_head_kv) throw Error("model shape: the head count is not a multiple of the kv-head count");
  if (hp.head_dim == 0) hp.head_dim = hp.n_embd / hp.n_head;
  if (hp.n_rot == 0) hp.n_rot = hp.head_dim;
  if (hp.n_rot % 2 || hp.n_rot > hp.head_dim) throw Error("model shape: bad rope dimension count");
  if (hp.n_ctx_train <= 0) hp.n_ctx_train = 2048;
  if (hp.n_expert < 0 || (hp.n_expert > 0 && (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert)) ||
      (hp.n_expert == 0 && hp.n_expert_used != 0))
    throw Error("model shape: " + std::to_string(hp.n_expert_used) + " of " + std::to_string(hp.n_expert) +
                " experts used per token is not a mixture (1 <= used <= experts, or 0 of 0)");
  return hp;
}

// Row r's stream starts from a state MIXED from (tensor, row): seeding row r with
// base + r·γ (γ SplitMix's own increment) would make row r+2 row r shifted by one
// value — rows of a matrix would be shifts of one another.
SplitMix row_stream(uint64_t base, uint64_t row) {
  SplitMix m{base ^ (row * 0xd1b54a32d192ed03ull)};
  return SplitMix{m.next()};
}

cpu::Linear f32_linear(const float* w, int64_t rows, int64_t cols) {
  cpu::Linear l;
  l.dense = cpu::WeightView{DType::F32, rows, cols, w, (size_t)cols * sizeof(float)};
  return l;
}

}  // namespace

// ---- parts ---------------------------------------------------------------------------

namespace {
std::string block_range(int64_t first, int64_t n) {
  if (n == 1) return "block " + std::to_string(first);
  return "blocks " + std::to_string(first) + "-" + std::to_string(first + n - 1);
}
}  // namespace

std::string PartSpec::describe() const {
  if (!embd_head) return n_blocks > 0 ? block_range(first_block, n_blocks) : "nothing";
  return n_blocks > 0 ? "embedding + head + " + block_range(first_block, n_blocks) : "embedding + head";
}

std::string PartSpec::describe(int64_t n_layer) const {
  return *this == PartSpec{0, n_layer, true} ? "whole model" : describe();
}

PartSpec whole_model(const LlamaHParams& hp) { return {0, hp.n_layer, true}; }

PartSpec trainer_part() { return {0, 0, true}; }

PartSpec stage_part(const LlamaHParams& hp, int stages, int k) {
  if (hp.n_layer <= 0) throw Error("stage_part: the model has no blocks");
  if (stages < 1 || stages > hp.n_layer)
    throw Error("cannot cut " + std::to_string(hp.n_layer) + " blocks into " + std::to_string(stages) +
                " stages (1 to " + std::to_string(hp.n_layer) + ")");
  if (k < 0 || k >= stages)
    throw Error("stage " + std::to_string(k) + " is outside 0.." + std::to_string(stages - 1));
  const int64_t base = hp.n_layer / stages, extra = hp.n_layer % stages;
  return {k * base + std::min<int64_t>(k, extra), base + (k < extra ? 1 : 0), false};
}

void check_part(const PartSpec& s, int64_t n_layer) {
  if (s.first_block < 0 || s.n_blocks < 0 || s.first_block > n_layer || s.n_blocks > n_layer - s.first_block)
    throw Error("part: blocks " + std::to_string(s.first_block) + " + " + std::to_string(s.n_blocks) +
                " are not within the model's " + std::to_string(n_layer));
  if (s.n_blocks == 0 && !s.embd_head) throw Error("part: holds no tensors");
}

// ---- layout and init ---------------------------------------------------------------

ModelParams ModelParams::layout(const LlamaHParams& hp_in) {
  const LlamaHParams hp = normalised(hp_in);
  return layout_part(hp, whole_model(hp));
}

ModelParams ModelParams::layout_part(const LlamaHParams& hp_in, const PartSpec& spec) {
  ModelParams p;
  p.hp = normalised(hp_in);
  check_part(spec, p.hp.n_layer);
  p.part = spec;
  const LlamaHParams& hp = p.hp;
  int64_t off = 0;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, int64_t n_mat = 0) {
    ParamTensor t;
    t.name = name;
    t.offset = off;
    t.ne = cols ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows};
    if (n_mat) t.ne.push_back(n_mat);
    off += t.numel();
    p.tensors.push_back(std::move(t));
  };
  if (spec.embd_head) {
    add("token_embd.weight", hp.n_vocab, hp.n_embd);
    add("output_norm.weight", hp.n_embd, 0);
    add("output.weight", hp.n_vocab, hp.n_embd);
  }
  for (int64_t b = spec.first_block; b < spec.first_block + spec.n_blocks; b++)
    for (const BlockTensor& t : block_tensors(hp)) add(blk(b, t.suffix), t.rows, t.cols, t.n_mat);
  p.data.assign((size_t)off, 0.0f);
  return p;
}

ModelParams ModelParams::init_random(const LlamaHParams& hp, uint64_t seed, float init_std) {
  const LlamaHParams h = normalised(hp);
  return init_random_part(h, whole_model(h), seed, init_std);
}

ModelParams ModelParams::init_random_part(const LlamaHParams& hp, const PartSpec& spec, uint64_t seed,
                                          float init_std) {
  ModelParams p = layout_part(hp, spec);
  // Residual projections are scaled down with depth (GPT-2's rule) so activations stay tame.
  // The whole model's depth (hp.n_layer), whichever part this is.
  const float proj_std = init_std / std::sqrt(2.0f * (float)p.hp.n_layer);
  for (const ParamTensor& t : p.tensors) {
    float* w = p.data.data() + t.offset;
    if (!t.is_matrix()) {
      std::fill(w, w + t.numel(), 1.0f);
      continue;
    }
    // ffn_down also matches a mixture's ffn_down_exps: each expert is scaled like the dense FFN.
    const bool proj = t.name.find("attn_output") != std::string::npos || t.name.find("ffn_down") != std::string::npos;
    const float sd = proj ? proj_std : init_std;
    // An expert stack is n_expert matrices back to back: its rows are all of theirs.
    const int64_t rows = t.numel() / t.ne[0], cols = t.ne[0];
    // Seeded by the tensor's name alone: a part's values are the whole model's.
    const uint64_t base = seed * 0x2545F4914F6CDD1Dull ^ name_hash(t.name);
    for (int64_t r = 0; r < rows; r++) {
      SplitMix g = row_stream(base, (uint64_t)r);
      for (int64_t c = 0; c < cols; c++) w[r * cols + c] = g.normal() * sd;
    }
  }
  return p;
}

ModelParams extract_part(const ModelParams& from, const PartSpec& spec) {
  ModelParams p = ModelParams::layout_part(from.hp, spec);
  for (const ParamTensor& t : p.tensors) {
    const ParamTensor& s = from.tensor(t.name);
    if (s.ne != t.ne) throw Error("extract_part: tensor " + t.name + " has another shape");
    std::copy(from.data.begin() + s.offset, from.data.begin() + s.offset + s.numel(), p.data.begin() + t.offset);
  }
  return p;
}

void insert_part(ModelParams& whole, const ModelParams& part) {
  whole.check_same_shape(part.hp, "insert_part");
  // Every tensor checked before any is written: a refused part leaves `whole` as it was.
  for (const ParamTensor& t : part.tensors)
    if (whole.tensor(t.name).ne != t.ne) throw Error("insert_part: tensor " + t.name + " has another shape");
  for (const ParamTensor& t : part.tensors)
    std::copy(part.data.begin() + t.offset, part.data.begin() + t.offset + t.numel(),
              whole.data.begin() + whole.tensor(t.name).offset);
}

ModelParams ModelParams::from_gguf(const GGUFFile& f) {
  LlamaHParams hp = LlamaHParams::from_gguf(f);
  if (f.has(kSpqrVersionKey))
    f.fail("is SpQR-quantized; full-parameter training needs F32/F16/BF16/Q8_0 weights (train from the original)");
  // llama and mistral share the block exactly; others differ (qwen2's biases and NeoX
  // rope, granite's multipliers) and would not survive a round trip as "llama".
  if (hp.arch != "llama" && hp.arch != "mistral")
    f.fail("architecture '" + hp.arch + "' is not supported for full-parameter training (llama, mistral)");
  if (f.find_tensor("blk.0.attn_q.bias")) f.fail("has attention biases, which full-parameter training lacks");
  hp.arch = "llama";
  ModelParams p = layout(hp);
  for (const ParamTensor& t : p.tensors) {
    const bool tied_head = t.name == "output.weight" && !f.find_tensor("output.weight");
    const GGUFTensorInfo& ti = f.require_tensor(tied_head ? "token_embd.weight" : t.name);
    // Q4_0 and Q6_K too (quantize's default embedding and head, llama.cpp's Q4_0 files):
    // rows are dequantized.
    if (ti.type != DType::F32 && ti.type != DType::F16 && ti.type != DType::BF16 && ti.type != DType::Q8_0 &&
        ti.type != DType::Q4_0 && ti.type != DType::Q6_K)
      f.fail("tensor " + ti.name + " has type " + dtype_name(ti.type) +
             "; F32, F16, BF16, Q8_0, Q6_K or Q4_0 can be trained");
    // Rows of every matrix (an expert stack: every expert's), dequantized one by one.
    const int64_t cols = t.ne[0], rows = t.numel() / cols;
    bool same_shape = ti.n_elements() == t.numel() && (int64_t)ti.n_dims == (int64_t)t.ne.size();
    for (size_t i = 0; same_shape && i < t.ne.size(); i++) same_shape = ti.ne[i] == t.ne[i];
    if (!same_shape) {
      std::string want;
      for (size_t i = 0; i < t.ne.size(); i++) want += (i ? ", " : "") + std::to_string(t.ne[i]);
      f.fail("tensor " + ti.name + " does not have the shape the hyper-parameters give ([" + want + "])");
    }
    const size_t rb = dtype_row_bytes(ti.type, cols);
    float* dst = p.data.data() + t.offset;
    for (int64_t r = 0; r < rows; r++) dequantize_row(ti.type, ti.data + rb * (size_t)r, dst + r * cols, cols);
  }
  return p;
}

// ---- access --------------------------------------------------------------------------

const ParamTensor& ModelParams::tensor(const std::string& name) const {
  for (const ParamTensor& t : tensors)
    if (t.name == name) return t;
  throw Error("model parameters have no tensor '" + name + "'");
}

// Where block b's tensors start in `tensors` (block_tensors order): after the 3
// embedding/head tensors when the part has them, block_tensor_count(hp) per block
// from first_block.
static size_t first_tensor_of_block(const ModelParams& p, int64_t b) {
  if (!p.has_block(b))
    throw Error("block " + std::to_string(b) + " is outside " +
                (p.is_whole() ? std::string("the model") : "this part (" + p.part.describe() + ")"));
  const size_t per = block_tensor_count(p.hp);
  const size_t i = (size_t)(p.part.embd_head ? 3 : 0) + per * (size_t)(b - p.part.first_block);
  if (i + per > p.tensors.size()) throw Error("model parameters do not match their part");
  return i;
}

LlamaBlockWeights ModelParams::block(int64_t b) const {
  const ParamTensor* t = &tensors[first_tensor_of_block(*this, b)];
  auto at = [&](int i) { return data.data() + t[i].offset; };
  auto lin = [&](int i) { return f32_linear(at(i), t[i].ne[1], t[i].ne[0]); };
  // Expert e of a stack [cols, rows, n_expert]: the e-th [rows][cols] matrix.
  auto experts = [&](int i) {
    const int64_t rows = t[i].ne[1], cols = t[i].ne[0];
    std::vector<cpu::Linear> ls;
    for (int64_t e = 0; e < t[i].ne[2]; e++) ls.push_back(f32_linear(at(i) + e * rows * cols, rows, cols));
    return ls;
  };
  LlamaBlockWeights w;
  w.attn_norm = at(0);
  w.wq = lin(1), w.wk = lin(2), w.wv = lin(3), w.wo = lin(4);
  w.ffn_norm = at(5);
  if (hp.moe()) {
    w.router = lin(6);
    w.exp_gate = experts(7), w.exp_up = experts(8), w.exp_down = experts(9);
  } else {
    w.w_gate = lin(6), w.w_up = lin(7), w.w_down = lin(8);
  }
  return w;
}

LlamaBlockGrads ModelParams::block_grads(int64_t b, float* grad) const {
  return detail::block_grads_at(*this, b, grad, 0);
}

uint64_t ModelParams::checksum() const { return XXH3_64bits(data.data(), data.size() * sizeof(float)); }

void ModelParams::check_same_shape(const LlamaHParams& other, const std::string& what) const {
  const LlamaHParams o = normalised(other);
  auto same = [&](const char* name, double a, double b) {
    if (a != b)
      throw Error(what + ": " + name + " is " + std::to_string(b) + ", the model's is " + std::to_string(a));
  };
  same("n_vocab", (double)hp.n_vocab, (double)o.n_vocab);
  same("n_embd", (double)hp.n_embd, (double)o.n_embd);
  same("n_ff", (double)hp.n_ff, (double)o.n_ff);
  same("n_layer", (double)hp.n_layer, (double)o.n_layer);
  same("n_head", (double)hp.n_head, (double)o.n_head);
  same("n_head_kv", (double)hp.n_head_kv, (double)o.n_head_kv);
  same("head_dim", (double)hp.head_dim, (double)o.head_dim);
  same("n_rot", (double)hp.n_rot, (double)o.n_rot);
  same("n_expert", (double)hp.n_expert, (double)o.n_expert);
  same("n_expert_used", (double)hp.n_expert_used, (double)o.n_expert_used);
  // Not shapes, but they change the function the parameters compute.
  same("rope.freq_base", hp.rope_freq_base, o.rope_freq_base);
  same("rms epsilon", hp.rms_eps, o.rms_eps);
}

void ModelParams::check_same_shape(const ModelParams& other, const std::string& what) const {
  check_same_shape(other.hp, what);
  if (!(other.part == part))
    throw Error(what + ": holds " + other.part.describe(other.hp.n_layer) + ", this holds " +
                part.describe(hp.n_layer));
}

// ---- files ---------------------------------------------------------------------------

void write_model_gguf(const ModelParams& p, const std::string& path, DType type, const GGUFFile* vocab_from,
                      const std::function<void(GGUFWriter&)>& extra) {
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16 && type != DType::Q8_0)
    throw Error(std::string("cannot write a model as ") + dtype_name(type) + " (f32, f16, bf16, q8_0)");
  const LlamaHParams& hp = p.hp;
  if (!p.is_whole()) throw Error("cannot write " + p.part.describe() + " as a model file: it is not the whole model");
  if (p.tensors.empty() || p.tensors.back().offset + p.tensors.back().numel() != p.size())
    throw Error("model parameters do not match their layout");
  GGUFWriter w;
  const std::string a = hp.arch + ".";
  w.set_string("general.architecture", hp.arch);
  w.set_string("general.name", "engine-trained-" + std::to_string(hp.n_embd) + "x" + std::to_string(hp.n_layer));
  w.set_u32("general.file_type", llama_file_type(type));
  w.set_u32(a + "context_length", (uint32_t)hp.n_ctx_train);
  w.set_u32(a + "embedding_length", (uint32_t)hp.n_embd);
  w.set_u32(a + "feed_forward_length", (uint32_t)hp.n_ff);
  w.set_u32(a + "block_count", (uint32_t)hp.n_layer);
  w.set_u32(a + "attention.head_count", (uint32_t)hp.n_head);
  w.set_u32(a + "attention.head_count_kv", (uint32_t)hp.n_head_kv);
  if (hp.head_dim != hp.n_embd / hp.n_head) w.set_u32(a + "attention.key_length", (uint32_t)hp.head_dim);
  w.set_u32(a + "rope.dimension_count", (uint32_t)hp.n_rot);
  w.set_f32(a + "rope.freq_base", hp.rope_freq_base);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", hp.rms_eps);
  w.set_u32(a + "vocab_size", (uint32_t)hp.n_vocab);
  if (hp.moe()) {
    w.set_u32(a + "expert_count", (uint32_t)hp.n_expert);
    w.set_u32(a + "expert_used_count", (uint32_t)hp.n_expert_used);
  }
  if (vocab_from) {
    const GGUFValue* toks = vocab_from->find("tokenizer.ggml.tokens");
    if (!toks) vocab_from->fail("has no tokenizer (tokenizer.ggml.tokens)");
    if ((int64_t)toks->count != hp.n_vocab)
      vocab_from->fail("has " + std::to_string(toks->count) + " tokens; the model's vocabulary is " +
                       std::to_string(hp.n_vocab));
    for (auto& kv : vocab_from->metadata())
      if (kv.first.rfind("tokenizer.", 0) == 0) w.set(kv.first, kv.second);
  } else {
    if (hp.n_vocab != kByteVocabSize)
      throw Error("the model's vocabulary is " + std::to_string(hp.n_vocab) + " tokens: give the file to copy the "
                  "tokenizer from (the built-in byte vocabulary has " + std::to_string(kByteVocabSize) + ")");
    set_byte_vocab(w);
  }
  if (extra) extra(w);
  // Matrices in `type`, vectors (norms) always F32 as llama.cpp keeps them. F32 data
  // is written straight from p.data; others are converted row by row first.
  for (const ParamTensor& t : p.tensors) {
    const float* src = p.data.data() + t.offset;
    // The router stays F32 whatever `type`, as llama.cpp's quantize keeps ffn_gate_inp.
    const bool router = t.name.find("ffn_gate_inp") != std::string::npos;
    const DType tt = t.is_matrix() && !router ? type : DType::F32;
    if (tt == DType::F32) {
      w.add_tensor(t.name, DType::F32, t.ne, src, (size_t)t.numel() * sizeof(float));
      continue;
    }
    const int64_t cols = t.ne[0], rows = t.numel() / cols;  // an expert stack: every expert's rows
    if (cols % dtype_block_size(tt))
      throw Error("tensor " + t.name + ": " + std::to_string(cols) + " columns do not fit " + dtype_name(tt) + " blocks");
    const size_t rb = dtype_row_bytes(tt, cols);
    std::vector<uint8_t> buf(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) quantize_row(tt, src + r * cols, buf.data() + rb * (size_t)r, cols);
    w.add_tensor_copy(t.name, tt, t.ne, buf.data(), buf.size());
  }
  w.write(path);  // to path + ".tmp", then renamed: never a half-written model under the name
}

// ---- loss and gradient -----------------------------------------------------------------
// The pieces (train/model_compute.h) are shared with the pipeline stages
// (train/stage_compute.cpp), which must reproduce model_loss_and_grad bit for bit.

namespace detail {

BlockViews::BlockViews(const ModelParams& params, ThreadPool& pool, bool with_backward) : p(params) {
  for (int64_t b = p.part.first_block; b < p.part.first_block + p.part.n_blocks; b++) blocks.push_back(p.block(b));
  if (!with_backward) return;
  // The backward's dX = dY·W of every window and every block reads W column-wise;
  // one transposed copy per call (the weights are fixed during it) lets each of
  // them run as a GEMM (cpu::Linear::dense_t) instead of transposing per window.
  std::vector<cpu::Linear*> ls;
  for (auto& b : blocks) {
    for (cpu::Linear* l : {&b.wq, &b.wk, &b.wv, &b.wo}) ls.push_back(l);
    if (p.hp.moe()) {
      ls.push_back(&b.router);
      for (auto* v : {&b.exp_gate, &b.exp_up, &b.exp_down})
        for (cpu::Linear& l : *v) ls.push_back(&l);
    } else {
      for (cpu::Linear* l : {&b.w_gate, &b.w_up, &b.w_down}) ls.push_back(l);
    }
  }
  size_t total = 0;
  for (auto* l : ls) total += (size_t)(l->dense.rows * l->dense.cols);
  transposed.resize(total);
  std::vector<float*> dst;
  size_t off = 0;
  for (auto* l : ls) dst.push_back(transposed.data() + off), off += (size_t)(l->dense.rows * l->dense.cols);
  for (size_t i = 0; i < ls.size(); i++) cpu::transpose_f32(ls[i]->dense, dst[i], pool);
  for (size_t i = 0; i < ls.size(); i++) ls[i]->dense_t = dst[i];
}

LmHead head_view(const ModelParams& p) {
  if (!p.part.embd_head) throw Error("this part (" + p.part.describe() + ") has no output head");
  const LlamaHParams& hp = p.hp;
  LmHead head;
  head.n_embd = hp.n_embd;
  head.n_vocab = hp.n_vocab;
  head.eps = hp.rms_eps;
  head.norm = p.ptr("output_norm.weight");
  head.out =
      cpu::WeightView{DType::F32, hp.n_vocab, hp.n_embd, p.ptr("output.weight"), (size_t)hp.n_embd * sizeof(float)};
  return head;
}

Range blocks_range(const ModelParams& p) {
  if (p.part.n_blocks == 0) return {};
  const ParamTensor& last = p.tensors[first_tensor_of_block(p, p.part.first_block + p.part.n_blocks - 1) +
                                       block_tensor_count(p.hp) - 1];
  return {p.tensors[first_tensor_of_block(p, p.part.first_block)].offset, last.offset + last.numel()};
}

Range head_range(const ModelParams& p) {
  const ParamTensor &norm = p.tensor("output_norm.weight"), &out = p.tensor("output.weight");
  if (out.offset != norm.offset + norm.numel()) throw Error("model parameters: the head tensors are not adjacent");
  return {norm.offset, out.offset + out.numel()};
}

Range embd_range(const ModelParams& p) {
  const ParamTensor& t = p.tensor("token_embd.weight");
  return {t.offset, t.offset + t.numel()};
}

LlamaBlockGrads block_grads_at(const ModelParams& p, int64_t b, float* g, int64_t g_begin) {
  const ParamTensor* t = &p.tensors[first_tensor_of_block(p, b)];
  auto at = [&](int i) { return g + (t[i].offset - g_begin); };
  LlamaBlockGrads r;
  r.d_attn_norm = at(0);
  r.dwq = at(1), r.dwk = at(2), r.dwv = at(3), r.dwo = at(4);
  r.d_ffn_norm = at(5);
  if (p.hp.moe()) {
    // Expert e's gradient is the e-th matrix of its stack, as in the weights (block()).
    auto experts = [&](int i) {
      std::vector<float*> v;
      for (int64_t e = 0; e < t[i].ne[2]; e++) v.push_back(at(i) + e * t[i].ne[1] * t[i].ne[0]);
      return v;
    };
    r.moe.d_router = at(6);
    r.moe.d_gate = experts(7), r.moe.d_up = experts(8), r.moe.d_down = experts(9);
  } else {
    r.dw_gate = at(6), r.dw_up = at(7), r.dw_down = at(8);
  }
  return r;
}

void embed_tokens(const ModelParams& p, const int32_t* tokens, int64_t n, float* x) {
  const int64_t d = p.hp.n_embd;
  const float* emb = p.ptr("token_embd.weight");
  for (int64_t t = 0; t < n; t++) {
    const int32_t tok = tokens[t];
    if (tok < 0 || tok >= p.hp.n_vocab)
      throw Error("input token " + std::to_string(tok) + " is outside the vocabulary");
    std::copy(emb + tok * d, emb + (tok + 1) * d, x + t * d);
  }
}

size_t block_acts_bytes(const LlamaHParams& hp, int64_t n) {
  // A mixture keeps gate, up and output per (token, chosen expert), and the router's probabilities.
  const int64_t ffn = hp.moe() ? hp.n_expert_used * (2 * hp.n_ff + hp.n_embd) + hp.n_expert : 3 * hp.n_ff;
  return (size_t)n * (size_t)(4 * hp.n_embd + 2 * hp.q_dim() + 2 * hp.kv_dim() + ffn) * sizeof(float);
}

void blocks_forward(const BlockViews& m, float* x, int64_t n, ThreadPool& pool, BlocksTape* tape,
                    size_t keep_acts_bytes, bool weight_grads) {
  const LlamaHParams& hp = m.p.hp;
  const int64_t L = (int64_t)m.blocks.size(), d = hp.n_embd;
  if (tape) {
    tape->keep_all = (size_t)L * block_acts_bytes(hp, n) <= keep_acts_bytes;
    tape->acts.assign(tape->keep_all ? (size_t)L : 1, LlamaBlockActs{});
    for (auto& a : tape->acts) a.keep_linear_inputs = weight_grads;
    tape->ck.assign(tape->keep_all ? 0 : (size_t)(L * n * d), 0.0f);
  }
  for (int64_t b = 0; b < L; b++) {
    if (tape && !tape->keep_all) std::copy(x, x + n * d, tape->ck.begin() + b * n * d);
    llama_block_forward_train(hp, m.blocks[b], x, n, pool, tape && tape->keep_all ? &tape->acts[b] : nullptr);
  }
}

void blocks_backward(const BlockViews& m, BlocksTape& tape, float* x, float* dx, int64_t n, ThreadPool& pool,
                     float* g, int64_t g_begin) {
  const LlamaHParams& hp = m.p.hp;
  const int64_t L = (int64_t)m.blocks.size(), d = hp.n_embd;
  for (int64_t b = L - 1; b >= 0; b--) {
    LlamaBlockActs* a = &tape.acts[tape.keep_all ? b : 0];
    if (!tape.keep_all) {
      std::copy(tape.ck.begin() + b * n * d, tape.ck.begin() + (b + 1) * n * d, x);
      llama_block_forward_train(hp, m.blocks[b], x, n, pool, a);
    }
    if (g) {
      LlamaBlockGrads gr = block_grads_at(m.p, m.p.part.first_block + b, g, g_begin);
      llama_block_backward(hp, m.blocks[b], *a, dx, pool, &gr);
    } else {
      llama_block_backward(hp, m.blocks[b], *a, dx, pool, nullptr);
    }
  }
}

bool windows_in_parallel(const LlamaHParams& hp, const ThreadPool& pool, int64_t n_windows) {
  return pool.size() > 1 && n_windows > 1 && hp.n_embd <= 512;
}

void for_each_window(ThreadPool& pool, int64_t nw, bool by_window, float* grad, Range r,
                     const std::function<void(int64_t i, float* g)>& fn) {
  if (!by_window) {
    for (int64_t i = 0; i < nw; i++) fn(i, grad ? grad + r.begin : nullptr);
    return;
  }
  const int64_t wave = std::min<int64_t>(pool.size(), nw), R = r.size();
  std::vector<std::vector<float>> bufs(grad ? (size_t)wave : 0);
  for (int64_t w0 = 0; w0 < nw; w0 += wave) {
    const int64_t c = std::min(wave, nw - w0);
    pool.parallel_for(c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        if (grad) bufs[i].assign((size_t)R, 0.0f);
        fn(w0 + i, grad ? bufs[i].data() : nullptr);
      }
    });
    if (!grad) continue;
    // grad[j] += buf_0[j] + ... in window order for every j: element-wise, so any split is exact.
    float* gr = grad + r.begin;
    pool.parallel_for(R, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = 0; i < c; i++) cpu::add_inplace(gr + begin, bufs[i].data() + begin, end - begin);
    });
  }
}

}  // namespace detail

CrossEntropyResult model_loss_and_grad(const ModelParams& p, const std::vector<Window>& windows, float grad_scale,
                                       float* grad, ThreadPool& pool, size_t keep_acts_bytes) {
  using namespace detail;
  if (!p.is_whole())
    throw Error("model_loss_and_grad needs the whole model; this is " + p.part.describe() + " (see stage_compute.h)");
  const BlockViews m(p, pool, grad != nullptr);
  const LmHead head = head_view(p);
  const int64_t nw = (int64_t)windows.size(), d = p.hp.n_embd;
  // Small models run windows in parallel, each into its own gradient buffer, added to
  // grad in window order; large ones one window at a time with parallel ops, straight
  // into grad (for_each_window).
  std::vector<CrossEntropyResult> res((size_t)nw);
  for_each_window(pool, nw, windows_in_parallel(p.hp, pool, nw), grad, Range{0, p.size()}, [&](int64_t i, float* g) {
    // One window: embed → blocks → fused head + loss → blocks backward → embedding backward.
    const Window& w = windows[i];
    const int64_t n = (int64_t)w.inputs.size();
    if ((int64_t)w.targets.size() != n) throw Error("window inputs and targets differ in length");
    if (n == 0) return;
    std::vector<float> x((size_t)(n * d));  // [n][d]
    embed_tokens(p, w.inputs.data(), n, x.data());
    if (!g) {
      blocks_forward(m, x.data(), n, pool, nullptr, 0, false);
      res[i] = head_cross_entropy(head, x.data(), w.targets.data(), n, grad_scale, nullptr, pool);
      return;
    }
    BlocksTape tape;
    blocks_forward(m, x.data(), n, pool, &tape, keep_acts_bytes, true);
    std::vector<float> dx((size_t)(n * d), 0.0f);  // d loss / d hidden [n][d]
    const LmHeadGrads hg{g + p.tensor("output.weight").offset, g + p.tensor("output_norm.weight").offset};
    res[i] = head_cross_entropy(head, x.data(), w.targets.data(), n, grad_scale, dx.data(), pool, 64, &hg);
    blocks_backward(m, tape, x.data(), dx.data(), n, pool, g, 0);
    cpu::embedding_backward(w.inputs.data(), dx.data(), g + p.tensor("token_embd.weight").offset, n, d);
  });
  CrossEntropyResult total;
  for (const CrossEntropyResult& r : res) total.loss_sum += r.loss_sum, total.n_scored += r.n_scored;
  return total;
}

}  // namespace engine::train
