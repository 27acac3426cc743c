// Mixture-of-experts blocks: the routing rule, and clear errors for bad Mixtral
// files (the logits against llama.cpp are in test_llama_oracle.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <numeric>

#include "core/error.h"
#include "models/llama.h"
#include "models/llama_moe.h"

using namespace engine;

namespace {

const std::string kModel = std::string(ENGINE_SHARED_DIR) + "/models/random-mixtral.gguf";

bool have_model() { return access(kModel.c_str(), R_OK) == 0; }

// random-mixtral with its metadata edited by `meta` and tensor `name` (when given)
// replaced by `ne` zeros; returns the load error ("" when it loads).
std::string load_error(const std::function<void(GGUFWriter&)>& meta, const std::string& name = "",
                       std::vector<int64_t> ne = {}) {
  auto src = GGUFFile::open(kModel);
  GGUFWriter w(src->alignment());
  w.copy_metadata(*src);
  meta(w);
  std::vector<float> zeros;
  for (auto& t : src->tensors()) {
    if (t.name == name) {
      const int64_t n = std::accumulate(ne.begin(), ne.end(), (int64_t)1, std::multiplies<int64_t>());
      zeros.assign((size_t)n, 0.0f);
      w.add_tensor(t.name, DType::F32, ne, zeros.data(), zeros.size() * 4);
    } else {
      w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
    }
  }
  // Named after the test: ctest runs each test in its own process, two at a time.
  const std::string path =
      testing::TempDir() + "moe_bad_" + testing::UnitTest::GetInstance()->current_test_info()->name() + ".gguf";
  w.write(path);
  try {
    LlamaModel::load(std::shared_ptr<const GGUFFile>(GGUFFile::open(path)));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(LlamaMoe, RoutesToTheTopKWithRenormalisedWeights) {
  LlamaHParams hp;
  hp.n_embd = 3, hp.n_expert = 4, hp.n_expert_used = 2;
  // Router rows pick out logits 1, 3, 2, 3 for h = (1, 0, 0): experts 1 and 3 tie; the lower goes first.
  const float R[12] = {1, 0, 0, 3, 0, 0, 2, 0, 0, 3, 0, 0};
  cpu::Linear router;
  router.dense = cpu::WeightView{DType::F32, 4, 3, R, 3 * sizeof(float)};
  const float h[3] = {1, 0, 0};
  ThreadPool pool(1);
  MoeRouting r = moe_route(hp, router, h, 1, pool);
  ASSERT_EQ(r.expert, (std::vector<int32_t>{1, 3}));
  EXPECT_FLOAT_EQ(r.weight[0], 0.5f);
  EXPECT_FLOAT_EQ(r.weight[1], 0.5f);
  EXPECT_NEAR(r.probs[0] + r.probs[1] + r.probs[2] + r.probs[3], 1.0, 1e-6);
  EXPECT_TRUE(r.rows_of[0].empty());
  EXPECT_EQ(r.rows_of[3], (std::vector<int64_t>{1}));
}

TEST(LlamaMoe, BadExpertCountsAreNamed) {
  if (!have_model()) GTEST_SKIP() << "shared test data not found: " << kModel;
  EXPECT_EQ(load_error([](GGUFWriter&) {}), "");
  std::string e = load_error([](GGUFWriter& w) { w.set_u32("llama.expert_used_count", 5); });
  EXPECT_TRUE(has(e, "llama.expert_used_count 5") && has(e, "1..4")) << e;
  e = load_error([](GGUFWriter& w) { w.set_u32("llama.expert_used_count", 0); });
  EXPECT_TRUE(has(e, "llama.expert_used_count 0")) << e;
  e = load_error([](GGUFWriter& w) { w.set_u32("llama.expert_count", 0); });
  EXPECT_TRUE(has(e, "expert_count is 0")) << e;
}

TEST(LlamaMoe, BadExpertShapesAreNamed) {
  if (!have_model()) GTEST_SKIP() << "shared test data not found: " << kModel;
  auto none = [](GGUFWriter&) {};
  std::string e = load_error(none, "blk.1.ffn_up_exps.weight", {64, 128, 3});
  EXPECT_TRUE(has(e, "'blk.1.ffn_up_exps.weight' has shape [64, 128, 3], expected [64, 128, 4]")) << e;
  e = load_error(none, "blk.0.ffn_down_exps.weight", {64, 128});
  EXPECT_TRUE(has(e, "'blk.0.ffn_down_exps.weight'") && has(e, "expected [128, 64, 4]")) << e;
  e = load_error(none, "blk.0.ffn_gate_inp.weight", {64, 5});
  EXPECT_TRUE(has(e, "'blk.0.ffn_gate_inp.weight'") && has(e, "expected [64, 4]")) << e;
  // Expert tensors in a file that does not say it has experts.
  e = load_error([](GGUFWriter& w) {
    w.set_u32("llama.expert_count", 0);
    w.set_u32("llama.expert_used_count", 0);
  });
  EXPECT_TRUE(has(e, "blk.0.ffn_gate_inp.weight") && has(e, "llama.expert_count")) << e;
}
