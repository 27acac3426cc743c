#include "web/generation_engine.h"

#include <algorithm>

#include "core/error.h"
#include "web/generation_stop.h"

namespace engine::web {

using Clock = std::chrono::steady_clock;

static double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void GenerationJob::wait(std::vector<GenerationEvent>* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !events_.empty(); });
  while (!events_.empty()) {
    out->push_back(std::move(events_.front()));
    events_.pop_front();
  }
}

void GenerationJob::emit(GenerationEvent e) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

struct GenerationEngine::Slot {
  std::unique_ptr<SlotRunner> runner;
  std::shared_ptr<GenerationJob> job;  // null: free
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StreamDecoder> dec;
  std::unique_ptr<StopMatcher> stop;
  bool started = false;
  int32_t last = 0;
  int64_t generated = 0, max_tokens = 0;
  Clock::time_point t_last;
};

void declare_generation_metrics(Metrics& m) {
  m.counter("engine_api_prompt_tokens_total", "prompt tokens evaluated");
  m.counter("engine_api_generated_tokens_total", "tokens generated");
  m.histogram("engine_api_time_per_token_seconds", "time between two tokens of one request",
              {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
  m.histogram("engine_api_time_to_first_token_seconds", "request received -> first token (queueing included)",
              {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  m.gauge("engine_api_sessions_active", "slots generating for a request");
  m.gauge("engine_api_slots", "generation slots (--parallel)");
  m.gauge("engine_api_queue_depth", "requests waiting for a slot");
  m.counter("engine_api_requests_cancelled_total", "requests whose client went away before the end");
  m.counter("engine_api_requests_rejected_total", "requests refused because the queue was full (503)");
  m.counter("engine_api_generation_errors_total", "generations that failed (e.g. no server for some blocks)");
}

GenerationEngine::GenerationEngine(const Tokenizer& tok, int64_t n_vocab,
                                   std::vector<std::unique_ptr<SlotRunner>> slots, size_t max_queue,
                                   Metrics* metrics, std::function<void()> after_round)
    : tok_(tok), n_vocab_(n_vocab), max_queue_(max_queue), metrics_(metrics), after_round_(std::move(after_round)) {
  if (slots.empty()) throw Error("the generation engine needs at least one slot");
  n_ctx_ = slots[0]->n_ctx();
  for (auto& r : slots) {
    auto s = std::make_unique<Slot>();
    s->runner = std::move(r);
    slots_.push_back(std::move(s));
  }
  if (metrics_) {
    declare_generation_metrics(*metrics_);
    metrics_->set("engine_api_slots", (double)slots_.size());
    metrics_->set("engine_api_sessions_active", 0);
    metrics_->set("engine_api_queue_depth", 0);
  }
}

GenerationEngine::~GenerationEngine() { stop(); }

std::shared_ptr<GenerationJob> GenerationEngine::submit(GenerationInput in) {
  auto job = std::make_shared<GenerationJob>(std::move(in));
  {
    std::lock_guard<std::mutex> lk(mu_);
    size_t free = 0;
    for (auto& s : slots_) free += s->job == nullptr;
    if (stop_ || queue_.size() >= max_queue_ + free) {
      if (metrics_) metrics_->add("engine_api_requests_rejected_total");
      return nullptr;
    }
    queue_.push_back(job);
    if (metrics_) metrics_->set("engine_api_queue_depth", (double)queue_.size());
  }
  cv_.notify_all();
  return job;
}

void GenerationEngine::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
}

// Under mu_: moves queued jobs into free slots.
void GenerationEngine::fill_slots() {
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.job) continue;
    while (!queue_.empty() && queue_.front()->cancelled()) {
      if (metrics_) metrics_->add("engine_api_requests_cancelled_total");
      queue_.pop_front();
    }
    if (queue_.empty()) break;
    s.job = std::move(queue_.front());
    queue_.pop_front();
    const GenerationInput& in = s.job->input;
    s.sampler = std::make_unique<Sampler>(in.sampling);
    s.dec = std::make_unique<StreamDecoder>(tok_);
    // The prompt goes through the decoder first so the first generated piece
    // keeps its leading space (the decoder strips it only at the very start).
    for (int32_t t : in.prompt) {
      s.sampler->accept(t);
      s.dec->push(t);
    }
    s.dec->flush();
    s.stop = std::make_unique<StopMatcher>(in.stop);
    s.started = false;
    s.generated = 0;
    int64_t room = n_ctx_ - (int64_t)in.prompt.size();
    s.max_tokens = in.max_tokens < 0 ? room : std::min(in.max_tokens, room);
  }
  if (metrics_) metrics_->set("engine_api_queue_depth", (double)queue_.size());
}

void GenerationEngine::release(Slot& s) {
  s.runner->end();
  std::lock_guard<std::mutex> lk(mu_);
  s.job.reset();
}

void GenerationEngine::finish(Slot& s, const std::string& reason, GenerationEvent e) {
  e.text += s.stop->push(s.dec->flush());
  e.finish_reason = s.stop->stopped() ? "stop" : reason;
  e.text += s.stop->flush();
  s.job->emit(std::move(e));
  release(s);
}

void GenerationEngine::step(Slot& s) {
  GenerationJob& job = *s.job;
  if (job.cancelled()) {
    if (metrics_) metrics_->add("engine_api_requests_cancelled_total");
    release(s);
    return;
  }
  if (s.max_tokens == 0) {
    finish(s, "length", {});
    return;
  }
  const std::vector<float>* logits;
  if (!s.started) {
    s.runner->begin((int64_t)job.input.prompt.size() + s.max_tokens);
    logits = &s.runner->eval(job.input.prompt);
    s.started = true;
    if (metrics_) metrics_->add("engine_api_prompt_tokens_total", (double)job.input.prompt.size());
  } else {
    logits = &s.runner->eval({s.last});
  }
  int32_t next = s.sampler->sample(logits->data(), n_vocab_);
  auto now = Clock::now();
  if (metrics_) {
    if (s.generated == 0)
      metrics_->observe("engine_api_time_to_first_token_seconds", seconds(now - job.submitted));
    else
      metrics_->observe("engine_api_time_per_token_seconds", seconds(now - s.t_last));
  }
  s.t_last = now;
  GenerationEvent e;
  if (job.input.logprobs >= 0) e.logprobs.push_back(token_logprob(logits->data(), n_vocab_, next, job.input.logprobs));
  if (tok_.is_eog(next)) {
    finish(s, "stop", {});  // the end-of-generation token is not part of the reply
    return;
  }
  s.sampler->accept(next);
  s.generated++;
  job.completion_tokens_++;
  if (metrics_) metrics_->add("engine_api_generated_tokens_total");
  s.last = next;
  e.text = s.stop->push(s.dec->push(next));
  if (s.stop->stopped()) {
    finish(s, "stop", std::move(e));
  } else if (s.generated >= s.max_tokens || s.runner->n_past() >= s.runner->n_ctx()) {
    finish(s, "length", std::move(e));
  } else if (!e.text.empty() || !e.logprobs.empty()) {
    job.emit(std::move(e));
  }
}

void GenerationEngine::run() {
  while (true) {
    bool any = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (stop_) break;
      fill_slots();
      for (auto& s : slots_) any |= s->job != nullptr;
      if (!any) cv_.wait_for(lk, std::chrono::milliseconds(500), [&] { return stop_ || !queue_.empty(); });
    }
    size_t active = 0;
    for (auto& sp : slots_) {
      Slot& s = *sp;
      if (!s.job) continue;
      try {
        step(s);
      } catch (const std::exception& x) {
        GenerationEvent e;
        ApiError err;
        err.status = 503;
        err.type = "server_error";
        err.message = std::string("generation failed: ") + x.what();
        e.error = err;
        s.job->emit(std::move(e));
        if (metrics_) metrics_->add("engine_api_generation_errors_total");
        try {
          release(s);
        } catch (const std::exception&) {
          std::lock_guard<std::mutex> lk(mu_);
          s.job.reset();
        }
      }
      active += s.job != nullptr;
    }
    if (metrics_) metrics_->set("engine_api_sessions_active", (double)active);
    if (after_round_) after_round_();
  }
  // Shutting down: whoever still waits gets an error rather than silence.
  std::lock_guard<std::mutex> lk(mu_);
  auto fail = [](GenerationJob& j) {
    GenerationEvent e;
    ApiError err;
    err.status = 503;
    err.type = "server_error";
    err.message = "the server is shutting down";
    e.error = err;
    j.emit(std::move(e));
  };
  for (auto& s : slots_)
    if (s->job) fail(*s->job), s->job.reset();
  for (auto& j : queue_) fail(*j);
  queue_.clear();
}

}  // namespace engine::web
