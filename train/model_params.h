// A whole Llama model as trainable f32 parameters in ONE flat vector.
//
// Full-parameter training (engine train) needs every weight mutable and in f32
// (the master weights), and the collaborative averager needs "the model" as one
// vector it can split into parts, all-reduce and checksum. So the parameters
// live in `data` back to back, in a fixed order of llama.cpp-named tensors, and
// the gradient is a vector of the same layout. Views (LlamaBlockWeights with F32
// cpu::Linear) point into `data`, so the inference-path ops run on it directly.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "core/thread_pool.h"
#include "models/byte_vocab.h"  // kByteVocabSize, set_byte_vocab: the default vocabulary
#include "models/llama.h"
#include "models/llama_backward.h"  // LlamaBlockGrads
#include "train/adapter.h"        // Window
#include "train/cross_entropy.h"  // CrossEntropyResult

namespace engine::train {

// Which tensors a ModelParams holds: blocks [first_block, first_block + n_blocks) and,
// when embd_head, token_embd.weight, output_norm.weight, output.weight.
//
// Pipeline-parallel (SWARM) training cuts the model into stages: a stage peer holds
// only its blocks (f32 master weights and optimizer state), the trainer only the
// embedding and the head. A part is a ModelParams with the WHOLE model's hp and only
// those tensors, laid out compactly in the whole model's relative order, so the
// optimizer, checksums and state bytes work on it unchanged.
struct PartSpec {
  int64_t first_block = 0, n_blocks = 0;
  bool embd_head = false;
  bool operator==(const PartSpec&) const = default;
  // "blocks 0-1", "block 3", "embedding + head", "embedding + head + blocks 0-3".
  std::string describe() const;
  // The same, but "whole model" when the part is all of a model of n_layer blocks.
  std::string describe(int64_t n_layer) const;
};
PartSpec whole_model(const LlamaHParams& hp);  // {0, n_layer, true}
// Stage k of `stages` (0 <= k < stages <= n_layer): blocks split evenly; block counts
// differ by at most one, earlier stages get the extra ones. Error on bad arguments.
PartSpec stage_part(const LlamaHParams& hp, int stages, int k);
PartSpec trainer_part();  // {0, 0, true}
// Throws Error unless spec is a non-empty part of a model of n_layer blocks.
void check_part(const PartSpec& spec, int64_t n_layer);

struct ParamTensor {
  std::string name;            // llama.cpp's: token_embd.weight, blk.3.attn_q.weight, ...
  int64_t offset = 0;          // into ModelParams::data, in floats
  std::vector<int64_t> ne;     // GGUF order: ne[0] innermost (cols), ne[1] rows
  int64_t numel() const;
  // A matrix or a stack of them (a mixture's experts): weight decay applies to these only.
  bool is_matrix() const { return ne.size() >= 2; }
};

struct ModelParams {
  LlamaHParams hp;             // arch "llama"; n_ctx_train is the training seqlen or more
  // token_embd, output_norm, output, then blk.0.* .. blk.L-1.*: 9 per dense block; 10 per
  // mixture-of-experts block (hp.moe()), whose router ffn_gate_inp and 3-D expert stacks
  // ffn_{gate,up,down}_exps ([cols, rows, n_expert]) replace ffn_gate, ffn_up, ffn_down.
  std::vector<ParamTensor> tensors;
  std::vector<float> data;     // every parameter, f32
  PartSpec part;               // which tensors `tensors` holds (layout(): the whole model)

  // Zero-filled parameters of a model shaped like hp (untied head: output.weight present).
  static ModelParams layout(const LlamaHParams& hp);
  // Only the tensors of `spec`, in the same relative order as layout(hp), with compact
  // offsets. hp stays the whole model's. Error when spec is not a part of hp's model.
  static ModelParams layout_part(const LlamaHParams& hp, const PartSpec& spec);
  // Random init, deterministic for a seed whatever the thread count: N(0, init_std²) for
  // matrices, a mixture's router and experts included (residual projections attn_output,
  // ffn_down and ffn_down_exps scaled by 1/sqrt(2·n_layer)), ones for norms. Each tensor is seeded by its name, so its values do not depend on
  // which other tensors are present.
  static ModelParams init_random(const LlamaHParams& hp, uint64_t seed, float init_std);
  // == extract_part(init_random(hp, seed, init_std), spec) bit for bit, without building
  // the whole model (the projections' scaling uses the whole model's n_layer).
  static ModelParams init_random_part(const LlamaHParams& hp, const PartSpec& spec, uint64_t seed, float init_std);
  // Any F32/F16/BF16/Q8_0 llama-family GGUF, dense or mixture of experts, converted to
  // f32 (a tied head is untied by copying the embedding). SpQR files are refused with a
  // clear Error.
  static ModelParams from_gguf(const GGUFFile& f);

  int64_t size() const { return (int64_t)data.size(); }
  const ParamTensor& tensor(const std::string& name) const;  // Error when absent
  float* ptr(const std::string& name) { return data.data() + tensor(name).offset; }
  const float* ptr(const std::string& name) const { return data.data() + tensor(name).offset; }

  bool is_whole() const { return part == whole_model(hp); }
  bool has_block(int64_t b) const { return b >= part.first_block && b < part.first_block + part.n_blocks; }

  // Views into data (valid until data is resized). b is the GLOBAL block index; Error
  // when this part does not hold block b.
  LlamaBlockWeights block(int64_t b) const;
  // The same block's tensors in `grad` (a vector laid out like data): norm and
  // linear weight gradient pointers for llama_block_backward.
  LlamaBlockGrads block_grads(int64_t b, float* grad) const;
  // xxh3-64 of the raw bytes of data: equal on peers whose parameters are bit-identical.
  uint64_t checksum() const;
  // Checks another model (e.g. a checkpoint or a peer's config) has the same shape;
  // throws Error naming the first difference.
  void check_same_shape(const LlamaHParams& other, const std::string& what) const;
  // The same, and that `other` holds the same part of the model.
  void check_same_shape(const ModelParams& other, const std::string& what) const;
};

// A copy of the tensors of `spec` (by name) from `from`, the whole model or any part
// holding them all (Error otherwise).
ModelParams extract_part(const ModelParams& from, const PartSpec& spec);
// Writes part's tensors into `whole` (or any larger part holding them), by name; Error
// (and whole unchanged) when the models' shapes differ or whole lacks one of them.
void insert_part(ModelParams& whole, const ModelParams& part);

// Writes p as a llama.cpp-layout GGUF (general.architecture = llama, hyper-parameters,
// matrices as `type`: F32, F16, BF16 or Q8_0 (Q8_0: widths in blocks of 32); norms
// always F32). The tokenizer metadata is
// copied from `vocab_from` when given, else the byte vocabulary. `extra` lets the caller
// add metadata (training provenance). Atomic: temp file in the same folder, then rename.
void write_model_gguf(const ModelParams& p, const std::string& path, DType type, const GGUFFile* vocab_from,
                      const std::function<void(GGUFWriter&)>& extra = nullptr);

// Σ cross-entropy of the model over the windows, and (grad non-null, same layout and
// size as p.data) the gradient of grad_scale·Σloss ACCUMULATED into grad: every
// tensor — embedding, norms, attention, FFN, head. Each window: embed → blocks
// (training forward) → fused head + loss (head gradients) → blocks backward →
// embedding backward. A window keeps every block's activations from the forward
// when they take at most keep_acts_bytes (dim 256, 4 blocks, 128 tokens: ~8.5 MB);
// beyond, only each block's input, and the backward recomputes one block at a time
// (same numbers, one more forward of work; 0 = always recompute).
// Small models (n_embd <= 512) run windows in parallel, each into its own gradient
// buffer, added to grad in window order: the result does not depend on timing or on
// the thread count (from 2 threads; 1 thread accumulates straight into grad). They
// run in waves of pool.size() windows: pool.size() extra gradient buffers.
// Inputs must be in [0, n_vocab) (else Error); targets < 0 score nothing. p must be the
// whole model (a part: train/stage_compute.h).
constexpr size_t kKeepActsBytes = size_t(64) << 20;
CrossEntropyResult model_loss_and_grad(const ModelParams& p, const std::vector<Window>& windows, float grad_scale,
                                       float* grad, ThreadPool& pool, size_t keep_acts_bytes = kKeepActsBytes);

}  // namespace engine::train
