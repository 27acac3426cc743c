#include "net/swarm_runner.h"

#include "core/error.h"

namespace engine::net {

SwarmRunner::SwarmRunner(const LlamaModel& model, SwarmClient& client, int64_t n_ctx, ThreadPool& pool)
    : model_(model), client_(client), n_ctx_(n_ctx), pool_(pool) {}

void SwarmRunner::set_prefix(std::vector<float> prefix, std::vector<float> prompts, int64_t P) {
  if (P < 1 || (int64_t)prefix.size() != P * model_.hparams().n_embd) throw Error("adapter prefix must be [P][n_embd]");
  if (P >= n_ctx_) throw Error("the adapter's prefix does not fit in the context (raise -c)");
  prefix_ = std::move(prefix), prompts_ = std::move(prompts), n_prefix_ = P;
  session_.reset();
}

const std::vector<float>& SwarmRunner::eval(const std::vector<int32_t>& tokens) {
  const auto& hp = model_.hparams();
  int64_t n = (int64_t)tokens.size();
  if (!session_) {
    session_ = std::make_unique<InferenceSession>(client_, n_ctx_);
    session_->set_rollback(allow_rollback_);
    if (n_prefix_ > 0) {
      if (!prompts_.empty()) session_->set_prompts(prompts_, n_prefix_);
      std::vector<float> x = prefix_;
      // The adapter's prefix, then the tokens (a rollback into it is impossible:
      // nothing was generated yet).
      session_->step(x.data(), n_prefix_);
    }
  }
  hidden_.resize((size_t)(n * hp.n_embd));
  model_.embed(tokens.data(), n, hidden_.data());
  if (!session_->step(hidden_.data(), n)) {
    rollback_ = session_->position() - n_prefix_;
    if (rollback_ < 0) session_.reset(), rollback_ = 0;  // the prefix was wrong too: start afresh
    return logits_;
  }
  logits_.resize((size_t)hp.n_vocab);
  model_.head(hidden_.data() + (n - 1) * hp.n_embd, 1, logits_.data(), pool_);
  return logits_;
}

SwarmClientOptions swarm_options_for(const LlamaModel& model, const std::string& name) {
  SwarmClientOptions o;
  o.model = name;
  o.n_blocks = model.hparams().n_layer;
  o.n_embd = model.hparams().n_embd;
  return o;
}

std::string model_dht_name(const std::string& path) {
  std::string s = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  if (s.size() > 5 && s.compare(s.size() - 5, 5, ".gguf") == 0) s.resize(s.size() - 5);
  // Keys are "<name>.<block>": keep names to characters that cannot confuse that.
  for (char& ch : s)
    if (!isalnum((unsigned char)ch) && ch != '-' && ch != '_') ch = '_';
  return s.empty() ? "model" : s;
}

}  // namespace engine::net
