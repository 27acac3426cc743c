// The token embedding and the output head as `engine quantize` stores them by
// default: Q4_0 rows (ggml's layout and rounding) that the model dequantizes on
// lookup, and which table types a tied or untied model ends up with.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "models/llama.h"
#include "quant/quantize_model.h"

using namespace engine;

namespace {

const std::string kModel = std::string(ENGINE_SHARED_DIR) + "/models/stories260K.gguf";
bool have_model() { return access(kModel.c_str(), R_OK) == 0; }

// stories260K rewritten: token_embd.weight as `embd`, output.weight dropped when `tied`.
std::string rewrite(DType embd, bool tied, const std::string& tag) {
  auto src = GGUFFile::open(kModel);
  GGUFWriter w(src->alignment());
  w.copy_metadata(*src);
  std::vector<uint8_t> table;
  for (auto& t : src->tensors()) {
    if (tied && t.name == "output.weight") continue;
    if (t.name == "token_embd.weight") {
      table = convert_rows(t.type, t.data, embd, t.ne[0], t.ne[1]);
      w.add_tensor_copy(t.name, embd, {t.ne[0], t.ne[1]}, table.data(), table.size());
    } else {
      w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
    }
  }
  const std::string path = testing::TempDir() + "tables_" + tag + ".gguf";
  w.write(path);
  return path;
}

}  // namespace

TEST(Q4_0, MatchesGgmlReferenceBytes) {
  // x_j = j - 16: the largest magnitude is x_0 = -16, so d = -16 / -8 = 2 and
  // q_j = min(15, trunc(x_j / 2 + 8.5)) = min(15, (j + 1) / 2), as ggml computes it.
  float x[32];
  for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
  BlockQ4_0 b;
  quantize_row(DType::Q4_0, x, &b, 32);
  EXPECT_EQ(b.d, f32_to_f16(2.0f));
  for (int j = 0; j < 16; j++) {
    const int lo = (j + 1) / 2, hi = std::min(15, (j + 17) / 2);
    EXPECT_EQ(b.qs[j], lo | (hi << 4)) << j;
  }
  float y[32];
  dequantize_row(DType::Q4_0, &b, y, 32);
  EXPECT_EQ(y[0], -16.0f);
  EXPECT_EQ(y[31], 14.0f);  // capped at code 15 = +7·d
  EXPECT_EQ(dtype_row_bytes(DType::Q4_0, 64), 36u);
  DType t;
  EXPECT_TRUE(dtype_from_name_storage("Q4_0", &t));
  EXPECT_EQ(t, DType::Q4_0);
  EXPECT_FALSE(dtype_from_name("q4_0", &t));  // no matmul runs on it
}

TEST(Q4_0, RoundTripWithinOneStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> x(32 * 40), y(x.size());
  for (float& v : x) v = N(rng);
  std::vector<BlockQ4_0> b(40);
  quantize_row(DType::Q4_0, x.data(), b.data(), (int64_t)x.size());
  dequantize_row(DType::Q4_0, b.data(), y.data(), (int64_t)x.size());
  for (size_t i = 0; i < x.size(); i++) {
    const float d = std::fabs(f16_to_f32(b[i / 32].d));
    // Half a step from rounding; a full step where the positive side is capped at +7·d.
    EXPECT_LE(std::fabs(x[i] - y[i]), d * 1.001f) << i;
  }
}

TEST(QuantizedTables, EmbeddingLookupDequantizesTheRow) {
  if (!have_model()) GTEST_SKIP() << "shared test data not found: " << kModel;
  auto f32 = std::shared_ptr<const GGUFFile>(GGUFFile::open(kModel));
  const std::string path = rewrite(DType::Q4_0, false, "q4");
  auto q4 = std::shared_ptr<const GGUFFile>(GGUFFile::open(path));
  ASSERT_EQ(q4->require_tensor("token_embd.weight").type, DType::Q4_0);
  auto mq = LlamaModel::load(q4, {0, 0, true, true});
  auto mf = LlamaModel::load(f32, {0, 0, true, false});
  const int64_t d = mq->hparams().n_embd;
  const int32_t tokens[3] = {1, 200, 511};
  std::vector<float> hq(3 * d), hf(3 * d);
  mq->embed(tokens, 3, hq.data());
  mf->embed(tokens, 3, hf.data());
  const GGUFTensorInfo& te = q4->require_tensor("token_embd.weight");
  for (int t = 0; t < 3; t++) {
    std::vector<float> want(d);
    dequantize_row(DType::Q4_0, te.data + (size_t)tokens[t] * dtype_row_bytes(DType::Q4_0, d), want.data(), d);
    for (int64_t i = 0; i < d; i++) {
      ASSERT_EQ(hq[t * d + i], want[i]) << t << " " << i;
      const auto* blk = (const BlockQ4_0*)(te.data + (size_t)tokens[t] * dtype_row_bytes(DType::Q4_0, d)) + i / 32;
      EXPECT_LE(std::fabs(hq[t * d + i] - hf[t * d + i]), std::fabs(f16_to_f32(blk->d)) * 1.001f);
    }
  }
  // A Q4_0 table cannot be a head: the error names the type, not a crash.
  const std::string tied = rewrite(DType::Q4_0, true, "q4tied");
  try {
    LlamaModel::load(std::shared_ptr<const GGUFFile>(GGUFFile::open(tied)), {0, 0, true, true});
    FAIL() << "a Q4_0 head loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported type Q4_0"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
  std::remove(tied.c_str());
}

TEST(QuantizedTables, DefaultsAndTiedModels) {
  QuantizeModelOptions opt;
  EXPECT_EQ(opt.head_type, DType::Q6_K);
  EXPECT_EQ(opt.embd_type, DType::Q4_0);
  if (!have_model()) GTEST_SKIP() << "shared test data not found: " << kModel;
  auto untied = GGUFFile::open(kModel);
  EmbdPlan p = plan_embedding(*untied, opt);
  EXPECT_EQ(p.type, DType::Q4_0);
  // stories260K's rows are 64 values: not whole Q6_K blocks, so the default head falls
  // back to Q8_0 (an explicit --head-type q6_k fails instead).
  EXPECT_EQ(p.head_type, DType::Q8_0);
  EXPECT_FALSE(p.explicit_head);

  // Tied: one table, in the head's type, unless the embedding type is asked for.
  const std::string path = rewrite(DType::F32, true, "tied");
  auto tied = GGUFFile::open(path);
  p = plan_embedding(*tied, opt);
  EXPECT_EQ(p.type, DType::Q8_0);
  EXPECT_FALSE(p.explicit_head);
  opt.embd_type_given = true;
  p = plan_embedding(*tied, opt);
  EXPECT_EQ(p.type, DType::Q4_0);
  EXPECT_TRUE(p.explicit_head);
  EXPECT_EQ(p.head_type, DType::Q8_0);
  // keep: as in the input.
  opt.keep_embd = opt.keep_head = true;
  p = plan_embedding(*tied, opt);
  EXPECT_EQ(p.type, DType::F32);
  EXPECT_FALSE(p.explicit_head);
  std::remove(path.c_str());
}
