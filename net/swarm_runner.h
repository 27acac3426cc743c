// The swarm counterpart of LocalRunner (models/loaded_model.h): the client
// keeps the embeddings and the head; the blocks run on the swarm through an
// InferenceSession. Same eval() contract, so generate and chat use either.
#pragma once
#include <memory>
#include <vector>

#include "models/llama.h"
#include "net/hidden_wire.h"
#include "net/swarm_client.h"

namespace engine::net {

class SwarmRunner {
 public:
  // `model` needs embeddings and head (blocks may be absent); n_ctx bounds the session.
  SwarmRunner(const LlamaModel& model, SwarmClient& client, int64_t n_ctx, ThreadPool& pool);
  // A prompt-tuning adapter: `prefix` [P][n_embd] rows go ahead of every session's
  // tokens (and count in n_past), `prompts` [n_blocks][P][n_embd] (or empty) are
  // the deep prompts the servers add to them. Call before the first eval().
  void set_prefix(std::vector<float> prefix, std::vector<float> prompts, int64_t P);
  // Feeds tokens at the next positions; returns logits [n_vocab] of the last one.
  const std::vector<float>& eval(const std::vector<int32_t>& tokens);
  int64_t n_past() const { return session_ ? session_->position() : 0; }
  int64_t n_ctx() const { return n_ctx_; }
  // Ends the session; the next eval() opens a fresh one.
  void reset() { session_.reset(); }
  // Lets spot checks roll the session back (the caller regenerates tokens; see
  // take_rollback). Without it a failed check only recomputes the current step.
  void set_rollback(bool on) { allow_rollback_ = on; }
  // After eval(): -1, or the number k of tokens fed since the start (after any
  // adapter prefix) that are still in the session because a spot check found
  // the outputs of later positions wrong. eval()'s logits are then meaningless:
  // the caller feeds its tokens from index k again (net::tokens_to_keep says
  // which of them are still right).
  int64_t take_rollback() {
    int64_t k = rollback_;
    rollback_ = -1;
    return k;
  }
  InferenceSession* session() { return session_.get(); }

 private:
  const LlamaModel& model_;
  SwarmClient& client_;
  int64_t n_ctx_;
  ThreadPool& pool_;
  std::unique_ptr<InferenceSession> session_;
  std::vector<float> hidden_, logits_;
  std::vector<float> prefix_, prompts_;
  int64_t n_prefix_ = 0;
  bool allow_rollback_ = false;
  int64_t rollback_ = -1;
};

// Options for a client of `model` (its shape), named `name` in the DHT.
SwarmClientOptions swarm_options_for(const LlamaModel& model, const std::string& name);

// The DHT name of a model file: its file name without directories and ".gguf".
std::string model_dht_name(const std::string& path);

}  // namespace engine::net
