// The generation engine on a real model (stories260K): interleaved slots give
// the same greedy text as one runner alone, a cancelled job frees its slot,
// and a full queue refuses.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "models/loaded_model.h"
#include "web/generation_engine.h"

using namespace engine;
using namespace engine::web;

namespace {

const std::string kModel = std::string(ENGINE_SHARED_DIR) + "/models/stories260K.gguf";

struct Fixture {
  LoadedModel m = load_model(kModel);
  ThreadPool pool{1};
  Metrics metrics;
  std::unique_ptr<GenerationEngine> engine;
  std::thread thread;
  Fixture(int slots, size_t queue, int64_t n_ctx = 256) {
    std::vector<std::unique_ptr<SlotRunner>> rs;
    for (int i = 0; i < slots; i++) rs.push_back(std::make_unique<LocalSlot>(*m.model, n_ctx, pool, DType::F16));
    engine = std::make_unique<GenerationEngine>(*m.tokenizer, m.model->hparams().n_vocab, std::move(rs), queue,
                                                &metrics);
  }
  void start() {
    thread = std::thread([this] { engine->run(); });
  }
  ~Fixture() {
    engine->stop();
    if (thread.joinable()) thread.join();
  }
  GenerationInput greedy(const std::string& prompt, int64_t n) {
    GenerationInput in;
    in.prompt = m.tokenizer->encode(prompt, true);
    in.max_tokens = n;
    in.sampling.temperature = 0;
    return in;
  }
  // Greedy ids from one LocalRunner, as `engine generate --temp 0` does.
  std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int n) {
    LocalRunner r(*m.model, 256, pool);
    std::vector<int32_t> out;
    const std::vector<float>* logits = &r.eval(prompt);
    for (int i = 0; i < n; i++) {
      const float* l = logits->data();
      int32_t best = (int32_t)(std::max_element(l, l + m.model->hparams().n_vocab) - l);
      if (m.tokenizer->is_eog(best)) break;
      out.push_back(best);
      logits = &r.eval({best});
    }
    return out;
  }
};

// Waits for the job's last event; returns the text and sets the finish reason.
std::string collect(GenerationJob& job, std::string* finish) {
  std::string text;
  for (int i = 0; i < 600 && finish->empty(); i++) {
    std::vector<GenerationEvent> evs;
    job.wait(&evs, std::chrono::milliseconds(100));
    for (auto& e : evs) {
      EXPECT_FALSE(e.error.has_value()) << e.error->message;
      text += e.text;
      if (!e.finish_reason.empty()) *finish = e.finish_reason;
    }
  }
  return text;
}

}  // namespace

TEST(GenerationEngine, InterleavedSlotsMatchOneRunner) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "no " << kModel;
  Fixture f(2, 8);
  f.start();
  const char* prompts[] = {"Once upon a time", "The cat", "Lily and Ben went", "One day"};
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (const char* p : prompts) jobs.push_back(f.engine->submit(f.greedy(p, 24)));
  for (size_t i = 0; i < jobs.size(); i++) {
    ASSERT_NE(jobs[i], nullptr);
    std::string finish;
    std::string text = collect(*jobs[i], &finish);
    std::vector<int32_t> prompt = jobs[i]->input.prompt;
    std::vector<int32_t> ref = f.reference(prompt, 24);
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), ref.begin(), ref.end());
    EXPECT_EQ(f.m.tokenizer->decode(prompt) + text, f.m.tokenizer->decode(all)) << prompts[i];
    EXPECT_EQ(finish, ref.size() == 24 ? "length" : "stop");
    EXPECT_EQ(jobs[i]->completion_tokens(), (int64_t)ref.size());
  }
  EXPECT_EQ(f.metrics.value("engine_api_generated_tokens_total"), 4 * 24.0);
}

TEST(GenerationEngine, StopStringEndsWithoutIt) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "no " << kModel;
  Fixture f(1, 4);
  f.start();
  GenerationInput in = f.greedy("Once upon a time", 40);
  in.stop = {"little"};
  auto job = f.engine->submit(in);
  std::string finish;
  std::string text = collect(*job, &finish);
  EXPECT_EQ(finish, "stop");
  EXPECT_EQ(text, ", there was a ");  // greedy stories260K: ", there was a little girl ..."
}

TEST(GenerationEngine, CancelFreesTheSlotAndFullQueueRefuses) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "no " << kModel;
  Fixture f(1, 1, 2048);  // a long context: `a` is far from done when cancelled
  // Not running yet: one job for the free slot, one for the queue, then no room.
  auto a = f.engine->submit(f.greedy("Once", -1));
  auto b = f.engine->submit(f.greedy("Once", 4));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(f.engine->submit(f.greedy("Once", 4)), nullptr);
  EXPECT_EQ(f.metrics.value("engine_api_requests_rejected_total"), 1);
  f.start();
  std::vector<GenerationEvent> evs;
  while (evs.empty()) a->wait(&evs, std::chrono::milliseconds(100));
  a->cancel();
  std::string finish;
  collect(*b, &finish);  // b gets the slot only once a let go of it
  EXPECT_EQ(finish, "length");
  EXPECT_LT(a->completion_tokens(), 2000);
  EXPECT_EQ(f.metrics.value("engine_api_requests_cancelled_total"), 1);
}
