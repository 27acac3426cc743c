#include "models/loaded_model.h"

#include <algorithm>

#include "core/error.h"

namespace engine {

LoadedModel load_model(const std::string& path, const LlamaLoadOptions& opts, bool need_tokenizer) {
  LoadedModel m;
  m.file = GGUFFile::open(path);
  m.model = LlamaModel::load(m.file, opts);
  if (need_tokenizer) {
    m.tokenizer = Tokenizer::from_gguf(*m.file);
    if (m.tokenizer->n_vocab() != m.model->hparams().n_vocab)
      m.file->fail("tokenizer has " + std::to_string(m.tokenizer->n_vocab()) + " tokens but the embedding has " +
                   std::to_string(m.model->hparams().n_vocab));
  }
  return m;
}

int64_t choose_context(const LlamaHParams& hp, int64_t requested, int64_t cap) {
  if (requested > 0) return requested;
  return std::min(hp.n_ctx_train, cap);
}

LocalRunner::LocalRunner(const LlamaModel& model, int64_t n_ctx, ThreadPool& pool, DType kv_type)
    : model_(model), pool_(pool), cache_(model.hparams(), 0, model.hparams().n_layer, n_ctx, kv_type) {}

std::vector<float> LocalRunner::eval_all(const std::vector<int32_t>& tokens) {
  const LlamaHParams& hp = model_.hparams();
  const int64_t n = (int64_t)tokens.size();
  if (n == 0) return {};
  hidden_.resize((size_t)(n * hp.n_embd));
  model_.embed(tokens.data(), n, hidden_.data());
  model_.forward(cache_, hidden_.data(), n, pool_);
  std::vector<float> logits((size_t)(n * hp.n_vocab));
  model_.head(hidden_.data(), n, logits.data(), pool_);
  return logits;
}

const std::vector<float>& LocalRunner::eval(const std::vector<int32_t>& tokens) {
  const LlamaHParams& hp = model_.hparams();
  const int64_t n = (int64_t)tokens.size();
  if (n == 0) throw Error("nothing to evaluate");
  hidden_.resize((size_t)(n * hp.n_embd));
  model_.embed(tokens.data(), n, hidden_.data());
  // Only the last position's logits are needed to pick the next token, so the last
  // block's feed-forward runs on that position alone.
  model_.forward(cache_, hidden_.data(), n, pool_, 1);
  logits_.resize((size_t)hp.n_vocab);
  model_.head(hidden_.data() + (n - 1) * hp.n_embd, 1, logits_.data(), pool_);
  return logits_;
}

}  // namespace engine
