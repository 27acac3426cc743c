// The generation loop behind the OpenAI API: one thread owns every slot's
// runner (SwarmClient and ThreadPool are single-threaded) and steps the active
// slots in turn — a request's prefill, then one token per slot per round.
// HTTP threads submit jobs and wait on the job's event queue.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "models/sampling.h"
#include "models/tokenizer.h"
#include "web/generation_logprobs.h"
#include "web/generation_runners.h"
#include "web/metrics.h"
#include "web/openai_request.h"

namespace engine::web {

struct GenerationInput {
  std::vector<int32_t> prompt;  // tokens, BOS included; shorter than the context
  int64_t max_tokens = -1;      // -1: until the context is full
  SamplingParams sampling;
  std::vector<std::string> stop;
  int logprobs = -1;  // -1: none; else alternatives per token
};

struct GenerationEvent {
  std::string text;                     // new text to show (may be empty)
  std::vector<TokenLogprob> logprobs;   // tokens behind it, when asked
  std::string finish_reason;            // "" until the last event: "stop" or "length"
  std::optional<ApiError> error;        // the generation failed (last event)
};

class GenerationJob {
 public:
  explicit GenerationJob(GenerationInput in) : input(std::move(in)) {}
  const GenerationInput input;
  const std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();

  // HTTP side: waits up to `timeout` for events and moves them into `out`.
  void wait(std::vector<GenerationEvent>* out, std::chrono::milliseconds timeout);
  // The client is gone: the slot is freed at the next round.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  int64_t completion_tokens() const { return completion_tokens_; }

  // Generation side.
  void emit(GenerationEvent e);
  std::atomic<int64_t> completion_tokens_{0};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
};

class GenerationEngine {
 public:
  // `after_round` runs on the generation thread after every round and while
  // idle (copies loop-owned statistics into metrics).
  GenerationEngine(const Tokenizer& tok, int64_t n_vocab, std::vector<std::unique_ptr<SlotRunner>> slots,
                   size_t max_queue, Metrics* metrics, std::function<void()> after_round = {});
  ~GenerationEngine();

  // Queues a job; nullptr when the queue is full (the caller answers 503).
  std::shared_ptr<GenerationJob> submit(GenerationInput in);
  // The most positions a request may use (prompt + generated).
  int64_t n_ctx() const { return n_ctx_; }

  // Runs the loop on the calling thread until stop().
  void run();
  void stop();

 private:
  struct Slot;
  void fill_slots();
  void step(Slot& s);
  void finish(Slot& s, const std::string& reason, GenerationEvent e);
  void release(Slot& s);

  const Tokenizer& tok_;
  int64_t n_vocab_;
  int64_t n_ctx_;
  std::vector<std::unique_ptr<Slot>> slots_;
  size_t max_queue_;
  Metrics* metrics_;
  std::function<void()> after_round_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  bool stop_ = false;
};

// Declares the engine's metrics (engine_api_*) in `m`.
void declare_generation_metrics(Metrics& m);

}  // namespace engine::web
