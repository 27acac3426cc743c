// A generation slot's model behind one interface: a LocalRunner (its own KV
// cache) or a SwarmRunner (its own session on the servers). The generation
// engine drives every slot from one thread, so neither needs locking.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "models/loaded_model.h"
#include "net/swarm_runner.h"

namespace engine::web {

class SlotRunner {
 public:
  virtual ~SlotRunner() = default;
  // A fresh cache for a request that needs at most `positions` positions.
  virtual void begin(int64_t positions) = 0;
  // Feeds tokens at the next positions; logits [n_vocab] of the last one.
  virtual const std::vector<float>& eval(const std::vector<int32_t>& tokens) = 0;
  virtual int64_t n_past() const = 0;
  // The most positions a request may use.
  virtual int64_t n_ctx() const = 0;
  // The request is over: free what it held (a swarm session is closed on the servers).
  virtual void end() = 0;
};

class LocalSlot : public SlotRunner {
 public:
  LocalSlot(const LlamaModel& model, int64_t n_ctx, ThreadPool& pool, DType kv) : r_(model, n_ctx, pool, kv) {}
  void begin(int64_t) override { r_.reset(); }
  const std::vector<float>& eval(const std::vector<int32_t>& t) override { return r_.eval(t); }
  int64_t n_past() const override { return r_.n_past(); }
  int64_t n_ctx() const override { return r_.n_ctx(); }
  void end() override { r_.reset(); }

 private:
  LocalRunner r_;
};

// Opens a session per request, sized to what the request can use, so servers
// reserve no more cache than needed.
class SwarmSlot : public SlotRunner {
 public:
  SwarmSlot(const LlamaModel& model, net::SwarmClient& client, int64_t n_ctx, ThreadPool& pool)
      : model_(model), client_(client), n_ctx_(n_ctx), pool_(pool) {}
  void begin(int64_t positions) override {
    r_ = std::make_unique<net::SwarmRunner>(model_, client_, std::min(n_ctx_, std::max<int64_t>(positions, 1)), pool_);
  }
  const std::vector<float>& eval(const std::vector<int32_t>& t) override { return r_->eval(t); }
  int64_t n_past() const override { return r_ ? r_->n_past() : 0; }
  int64_t n_ctx() const override { return r_ ? r_->n_ctx() : n_ctx_; }
  void end() override { r_.reset(); }  // ~InferenceSession closes the server sessions

 private:
  const LlamaModel& model_;
  net::SwarmClient& client_;
  int64_t n_ctx_;
  ThreadPool& pool_;
  std::unique_ptr<net::SwarmRunner> r_;
};

}  // namespace engine::web
