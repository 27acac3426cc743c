// What a command needs to run a model locally: the mapped file, the blocks,
// and the tokenizer. Also the prefill/decode loop shared by generate, chat,
// logits and perplexity.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "core/thread_pool.h"
#include "models/llama.h"
#include "models/tokenizer.h"

namespace engine {

struct LoadedModel {
  std::shared_ptr<const GGUFFile> file;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// Opens `path`, loads the requested blocks and, when `need_tokenizer`, the tokenizer.
LoadedModel load_model(const std::string& path, const LlamaLoadOptions& opts = {}, bool need_tokenizer = true);

// Runs a whole local model over a growing sequence: eval() appends tokens and
// returns the logits of the last one (or of all of them).
class LocalRunner {
 public:
  // kv_type: F16 (llama.cpp's default, half the memory) or F32.
  LocalRunner(const LlamaModel& model, int64_t n_ctx, ThreadPool& pool, DType kv_type = DType::F16);
  // Feeds tokens at the next positions; returns logits [n_vocab] of the last token.
  const std::vector<float>& eval(const std::vector<int32_t>& tokens);
  // Same, but logits for every token: [n][n_vocab].
  std::vector<float> eval_all(const std::vector<int32_t>& tokens);
  int64_t n_past() const { return cache_.n_past; }
  int64_t n_ctx() const { return cache_.n_ctx; }
  void reset() { cache_.clear(); }

 private:
  const LlamaModel& model_;
  ThreadPool& pool_;
  KVCache cache_;
  std::vector<float> hidden_, logits_;
};

// The context size to use: the user's -c when given (> 0), else the model's
// training context capped at `cap`.
int64_t choose_context(const LlamaHParams& hp, int64_t requested, int64_t cap = 4096);

}  // namespace engine
