// engine train's pieces: the corpus reader, the loss log and chart, the optimizer
// step with decay on matrices only, checkpoints and the state bytes (round trips and
// refusals), and a resumed run equal to an uninterrupted one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/io.h"
#include "train/loss_chart.h"
#include "train/pretrain.h"

using namespace engine;
using namespace engine::train;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    dir = fs::temp_directory_path() / ("engine-test-pretrain-" + std::to_string(getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

LlamaHParams tiny_shape() {
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = kByteVocabSize;
  hp.n_embd = 16, hp.n_ff = 32, hp.n_layer = 2, hp.n_head = 2, hp.n_head_kv = 1, hp.head_dim = 8, hp.n_rot = 8;
  hp.n_ctx_train = 16;
  return hp;
}

TrainState tiny_state(uint64_t seed) {
  TrainState s;
  s.params = ModelParams::init_random(tiny_shape(), seed, 0.05f);
  std::mt19937 rng((uint32_t)seed);
  std::normal_distribution<float> N;
  for (auto* v : {&s.opt.m, &s.opt.v}) {
    v->resize(s.params.data.size());
    for (float& x : *v) x = std::fabs(N(rng));
  }
  s.step = s.opt.t = 7, s.seed = 0xfedcba9876543210ull, s.samples = 56;
  return s;
}

TextData random_text(int64_t n) {
  TextData d;
  d.bos = 1;
  std::mt19937 rng(5);
  for (int64_t i = 0; i < n; i++) d.train.push_back(3 + (int32_t)(rng() % 40));  // a few byte tokens
  d.heldout.assign(d.train.end() - n / 5, d.train.end());
  d.train.resize((size_t)(n - n / 5));
  return d;
}

}  // namespace

// ---- corpus -------------------------------------------------------------------

TEST(Corpus, FileAndFolder) {
  TempDir t;
  write(t.path("one.txt"), "hello");
  EXPECT_EQ(read_corpus(t.path("one.txt")), "hello");
  write(t.path("d/b.txt"), "second");
  write(t.path("d/a/z.txt"), "first");  // "d/a/z.txt" sorts before "d/b.txt"
  write(t.path("d/c.bin"), std::string("x\0y", 3));
  write(t.path("d/empty.txt"), "");
  fs::create_symlink(t.path("d/b.txt"), t.path("d/link.txt"));  // not followed: b counts once
  std::vector<std::string> skipped;
  EXPECT_EQ(read_corpus(t.path("d"), &skipped), "first\nsecond");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("c.bin"), std::string::npos);
}

TEST(Corpus, Refusals) {
  TempDir t;
  auto fails_with = [](const std::string& path, const std::string& what) {
    try {
      read_corpus(path);
      ADD_FAILURE() << path << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  fails_with(t.path("missing.txt"), "no such file");
  write(t.path("empty.txt"), "");
  fails_with(t.path("empty.txt"), "empty");
  write(t.path("bin.dat"), std::string("a\0b", 3));
  fails_with(t.path("bin.dat"), "NUL");
  write(t.path("bins/x"), std::string("a\0b", 3));
  fails_with(t.path("bins"), "no text in the folder");
  fs::create_directories(t.path("nothing"));
  fails_with(t.path("nothing"), "no text in the folder");
}

// ---- loss log and chart -----------------------------------------------------------

TEST(LossChart, CsvRoundTripWithMissingValues) {
  TempDir t;
  const std::string path = t.path("log.csv");
  {
    LossLog log(path, -1);
    LossRow a;
    a.eval_loss = 5.5;  // evaluation-only row
    log.append(a);
    for (int s = 1; s <= 4; s++) {
      LossRow r;
      r.step = s, r.samples = 8 * s, r.tokens = 1024 * s;
      r.train_loss = 5.0 - 0.5 * s, r.lr = 1e-3, r.grad_norm = 0.5, r.tokens_per_s = 1234.5, r.elapsed_s = 0.25 * s;
      if (s == 4) r.eval_loss = 3.25;
      log.append(r);
    }
  }
  const std::string text = read_file_bytes(path);
  EXPECT_EQ(text.substr(0, text.find('\n')), kLossCsvHeader);
  const std::vector<LossRow> rows = read_loss_csv(path);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].step, 0);
  EXPECT_TRUE(std::isnan(rows[0].train_loss));
  EXPECT_DOUBLE_EQ(rows[0].eval_loss, 5.5);
  EXPECT_EQ(rows[4].step, 4);
  EXPECT_EQ(rows[4].samples, 32);
  EXPECT_EQ(rows[4].tokens, 4096);
  EXPECT_DOUBLE_EQ(rows[4].train_loss, 3.0);
  EXPECT_DOUBLE_EQ(rows[4].eval_loss, 3.25);
  EXPECT_TRUE(std::isnan(rows[2].eval_loss));
  EXPECT_DOUBLE_EQ(rows[3].elapsed_s, 0.75);

  // Resuming at step 2 drops the rows written after that checkpoint, then appends.
  {
    LossLog log(path, 2);
    EXPECT_EQ(log.rows().size(), 3u);
    LossRow r;
    r.step = 3, r.train_loss = 9;
    log.append(r);
  }
  const std::vector<LossRow> resumed = read_loss_csv(path);
  ASSERT_EQ(resumed.size(), 4u);
  EXPECT_EQ(resumed[3].step, 3);
  EXPECT_DOUBLE_EQ(resumed[3].train_loss, 9);

  write(t.path("bad.csv"), "step,train_loss\n1,abc\n");
  EXPECT_THROW(read_loss_csv(t.path("bad.csv")), Error);
  write(t.path("nostep.csv"), "a,b\n1,2\n");
  EXPECT_THROW(read_loss_csv(t.path("nostep.csv")), Error);
  EXPECT_THROW(read_loss_csv(t.path("missing.csv")), Error);
}

TEST(LossChart, SvgHasAxesCurvesAndLegend) {
  std::vector<LossRow> rows;
  for (int s = 0; s <= 40; s++) {
    LossRow r;
    r.step = s, r.samples = 8 * s;
    if (s > 0) r.train_loss = 5.5 * std::exp(-s / 15.0) + 1;
    if (s % 10 == 0) r.eval_loss = 5.5 * std::exp(-s / 15.0) + 1.2;
    rows.push_back(r);
  }
  std::vector<Series> series = loss_series(rows, true, "single ");
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].name, "single train");
  EXPECT_EQ(series[0].xs.size(), 40u);
  EXPECT_EQ(series[1].xs.size(), 5u);
  EXPECT_EQ(series[1].xs.back(), 320);
  for (Series& s : loss_series(rows, false, "swarm ")) series.push_back(s);
  const std::string svg = loss_svg("a <b> & c", "samples", "loss", series);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_NE(svg.find("a &lt;b&gt; &amp; c"), std::string::npos);
  EXPECT_NE(svg.find(">swarm eval</text>"), std::string::npos);
  EXPECT_NE(svg.find(">350</text>"), std::string::npos);  // x ticks of 50 up past the last sample (320)
  size_t polylines = 0;
  for (size_t at = 0; (at = svg.find("<polyline", at)) != std::string::npos; at++) polylines++;
  EXPECT_EQ(polylines, 4u);
  // Every opened element is closed (self-closing or with its end tag).
  size_t opens = 0, closes = 0;
  for (size_t i = 0; i + 1 < svg.size(); i++) {
    if (svg[i] == '<' && svg[i + 1] != '/' && svg[i + 1] != '?') opens++;
    if ((svg[i] == '<' && svg[i + 1] == '/') || (svg[i] == '/' && svg[i + 1] == '>')) closes++;
  }
  EXPECT_EQ(opens, closes);
  EXPECT_THROW(loss_svg("empty", "x", "y", {Series{"none", {}, {}}}), Error);
  // One point (or a flat curve) still gives a drawable range.
  EXPECT_NO_THROW(loss_svg("one", "x", "y", {Series{"p", {3}, {2}}}));
}

// ---- optimizer --------------------------------------------------------------------

TEST(Pretrain, AdamWUpdateOnRangesEqualsOneCall) {
  std::mt19937 rng(3);
  std::normal_distribution<float> N;
  std::vector<float> p(1000), g(1000);
  for (float& x : p) x = N(rng);
  for (float& x : g) x = N(rng);
  AdamWConfig c;
  c.weight_decay = 0.1f;
  std::vector<float> p1 = p;
  AdamWState s;
  adamw_step(p1.data(), g.data(), 1000, s, c, 1e-2f);
  std::vector<float> p2 = p, m(1000, 0.0f), v(1000, 0.0f);
  adamw_update(p2.data(), g.data(), m.data(), v.data(), 300, 1, c, 1e-2f, 0.1f);
  adamw_update(p2.data() + 300, g.data() + 300, m.data() + 300, v.data() + 300, 700, 1, c, 1e-2f, 0.1f);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(s.m, m);
}

TEST(Pretrain, WeightDecayOnMatricesOnly) {
  ThreadPool pool(2);
  TextData data = random_text(400);
  PretrainConfig cfg;
  cfg.steps = 10, cfg.batch = 2, cfg.seqlen = 8, cfg.lr = 0.1f, cfg.weight_decay = 0.5f, cfg.warmup = 0;
  TrainState st;
  st.params = ModelParams::init_random(tiny_shape(), 1, 0.05f);
  const std::vector<float> before = st.params.data;
  Trainer t(std::move(st), data, cfg, pool);
  std::vector<float> zero((size_t)t.state().params.size(), 0.0f);
  float lr = 0;
  EXPECT_EQ(t.apply_step(zero.data(), &lr), 0.0f);
  EXPECT_EQ(lr, 0.1f);
  EXPECT_EQ(t.step(), 1);
  // A zero gradient leaves only the decay: p·(1 − lr·wd) on matrices, norms untouched.
  for (const ParamTensor& pt : t.state().params.tensors) {
    const float k = pt.is_matrix() ? 1.0f - 0.1f * 0.5f : 1.0f;
    for (int64_t i = 0; i < pt.numel(); i += 7)
      ASSERT_NEAR(t.state().params.data[pt.offset + i], before[pt.offset + i] * k, 1e-7) << pt.name;
  }
}

// ---- checkpoints and state bytes ---------------------------------------------------

TEST(Pretrain, StateBytesRoundTrip) {
  const TrainState s = tiny_state(9);
  const std::string bytes = serialize_state(s);
  const TrainState r = deserialize_state(bytes);
  EXPECT_EQ(r.params.data, s.params.data);
  EXPECT_EQ(r.opt.m, s.opt.m);
  EXPECT_EQ(r.opt.v, s.opt.v);
  EXPECT_EQ(r.step, 7);
  EXPECT_EQ(r.opt.t, 7);
  EXPECT_EQ(r.seed, s.seed);
  EXPECT_EQ(r.samples, 56);
  EXPECT_EQ(r.params.checksum(), s.params.checksum());
  EXPECT_NO_THROW(r.params.check_same_shape(s.params.hp, "round trip"));
  // Truncated, padded, a wrong magic, a shape that does not fit the byte count.
  EXPECT_THROW(deserialize_state(std::string_view(bytes).substr(0, 30)), Error);
  EXPECT_THROW(deserialize_state(std::string_view(bytes).substr(0, bytes.size() - 4)), Error);
  EXPECT_THROW(deserialize_state(bytes + "xxxx"), Error);
  std::string bad = bytes;
  bad[0] = 'X';
  EXPECT_THROW(deserialize_state(bad), Error);
  bad = bytes;
  bad[12 + 8 * 2] = 48;  // n_ff 32 -> 48: more parameters than the count and the bytes
  EXPECT_THROW(deserialize_state(bad), Error);
  bad = bytes;
  bad[12 + 8 * 3] = 1;  // n_layer 2 -> 1: the part (blocks 0-1) is not within the model
  EXPECT_THROW(deserialize_state(bad), Error);
  // (n_layer 2 -> 3 would read as a valid part: blocks 0-1 and the head of a 3-block model.)
  bad = bytes;
  bad[12 + 8 * 1 + 7] = 0x7f;  // n_embd huge
  EXPECT_THROW(deserialize_state(bad), Error);
  bad = bytes;
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(&bad[12 + 8 * 9 + 4], &inf, 4);  // rope_freq_base
  EXPECT_THROW(deserialize_state(bad), Error);
}

// A peer's header may claim a huge model whose parameter count agrees with its
// shape: the byte count refuses it before anything of that size is allocated.
TEST(Pretrain, StateBytesHugeConsistentHeaderRefused) {
  const std::string bytes = serialize_state(tiny_state(2));
  auto put64 = [](std::string& b, size_t at, int64_t v) { std::memcpy(&b[at], &v, 8); };
  int64_t block = 0;  // parameters of one layer of the tiny shape
  const ModelParams p = ModelParams::layout(tiny_shape());
  for (const ParamTensor& t : p.tensors)
    if (t.name.rfind("blk.0.", 0) == 0) block += t.numel();
  std::string bad = bytes;
  const int64_t layers = int64_t(1) << 24;  // ~ 10^10 parameters, 120 GB of values
  put64(bad, 12 + 8 * 3, layers);
  put64(bad, 12 + 8 * 13, p.size() + (layers - p.hp.n_layer) * block);
  EXPECT_THROW(deserialize_state(bad), Error);
  EXPECT_THROW(deserialize_state(std::string_view(bad).substr(0, 124)), Error);  // the header alone
}

TEST(Pretrain, CheckpointRoundTripF32AndF16) {
  TempDir t;
  const TrainState s = tiny_state(4);
  for (DType type : {DType::F32, DType::F16}) {
    const std::string path = t.path(std::string("ck-") + dtype_name(type) + ".gguf");
    save_checkpoint(s, path, type, nullptr);
    ASSERT_TRUE(fs::exists(state_path(path)));
    const TrainState r = load_checkpoint(path);
    EXPECT_EQ(r.params.data, s.params.data) << "f16 models keep f32 master weights in the state";
    EXPECT_EQ(r.opt.m, s.opt.m);
    EXPECT_EQ(r.opt.v, s.opt.v);
    EXPECT_EQ(r.step, 7);
    EXPECT_EQ(r.seed, s.seed);
    EXPECT_EQ(r.samples, 56);
    LlamaHParams other = tiny_shape();
    other.n_embd = 32;
    EXPECT_THROW(load_checkpoint(path, &other), Error);
  }
  // A state beside other weights is refused, and a model without state is not a checkpoint.
  const std::string a = t.path("a.gguf");
  save_checkpoint(s, a, DType::F32, nullptr);
  TrainState other = tiny_state(5);
  write_model_gguf(other.params, t.path("b.gguf"), DType::F32, nullptr);
  fs::copy_file(state_path(a), state_path(t.path("b.gguf")));
  EXPECT_THROW(load_checkpoint(t.path("b.gguf")), Error);
  write_model_gguf(other.params, t.path("c.gguf"), DType::F32, nullptr);
  EXPECT_THROW(load_checkpoint(t.path("c.gguf")), Error);
}

TEST(Pretrain, ResumedRunEqualsUninterrupted) {
  ThreadPool pool(2);
  TextData data = random_text(600);
  PretrainConfig cfg;
  cfg.steps = 6, cfg.batch = 2, cfg.seqlen = 8, cfg.eval_every = 2, cfg.eval_windows = 4;
  auto fresh = [] {
    TrainState s;
    s.params = ModelParams::init_random(tiny_shape(), 2, 0.05f);
    s.seed = 11;
    return s;
  };
  Trainer full(fresh(), data, cfg, pool);
  std::vector<double> evals;
  int checkpoints = 0;
  pretrain(
      full, [&](const StepReport& r) { if (r.has_eval) evals.push_back(r.eval_loss); },
      [&](int64_t) { checkpoints++; });
  EXPECT_EQ(full.step(), 6);
  EXPECT_EQ(full.state().samples, 12);
  EXPECT_EQ(evals.size(), 4u);  // before step 1, after 2, 4, 6
  EXPECT_LT(evals.back(), evals.front());
  EXPECT_EQ(checkpoints, 1);  // at the end only

  PretrainConfig half = cfg;
  half.stop_at = 3;
  Trainer first(fresh(), data, half, pool);
  pretrain(first, nullptr, nullptr);
  EXPECT_EQ(first.step(), 3);
  // Through the network's bytes, then on to the end.
  Trainer second(deserialize_state(serialize_state(first.state())), data, cfg, pool);
  pretrain(second, nullptr, nullptr);
  EXPECT_EQ(second.step(), 6);
  EXPECT_EQ(second.state().samples, 12);
  EXPECT_EQ(second.state().params.data, full.state().params.data);
  EXPECT_EQ(second.state().opt.m, full.state().opt.m);
  EXPECT_EQ(second.state().opt.v, full.state().opt.v);
}

TEST(Pretrain, TrainerRefusesBadConfig) {
  ThreadPool pool(1);
  TextData data = random_text(100);
  TrainState s;
  s.params = ModelParams::init_random(tiny_shape(), 1, 0.05f);
  PretrainConfig cfg;
  cfg.seqlen = 32;  // past n_ctx_train 16
  EXPECT_THROW(Trainer(s, data, cfg, pool), Error);
  cfg.seqlen = 8, cfg.steps = 0;
  EXPECT_THROW(Trainer(s, data, cfg, pool), Error);
  TextData short_data = random_text(10);
  cfg.steps = 5;
  EXPECT_THROW(Trainer(s, short_data, cfg, pool), Error);
}
