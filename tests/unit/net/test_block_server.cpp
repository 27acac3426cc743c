// The block server on 127.0.0.1 with stories260K: steps equal a local forward,
// every kind of bad request gets an error reply, the cache budget holds, and
// the server keeps serving afterwards.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "loop_util.h"
#include "models/llama_backward.h"
#include "net/block_server.h"
#include "net/hidden_wire.h"

using namespace engine;
using namespace engine::net;
using nettest::run_until;

namespace {

const std::string kModel = std::string(ENGINE_SHARED_DIR) + "/models/stories260K.gguf";

struct BlockServerTest : ::testing::Test {
  uv_loop_t loop;
  std::shared_ptr<const GGUFFile> file;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Rpc> srv_rpc, cli;
  std::unique_ptr<BlockServer> server;
  std::string addr;
  int64_t E = 0;
  uint32_t delay_ms = 0;  // set by fixtures of slow servers
  std::function<void(BlockServerOptions&)> tweak;  // set by fixtures that change limits

  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "no " << kModel;
    uv_loop_init(&loop);
    file = GGUFFile::open(kModel);
    LlamaLoadOptions lo;
    lo.first_block = 1, lo.last_block = 4, lo.embeddings = false, lo.head = false;
    std::shared_ptr<const LlamaModel> m = LlamaModel::load(file, lo);
    E = m->hparams().n_embd;
    pool = std::make_unique<ThreadPool>(1);
    srv_rpc = std::make_unique<Rpc>(&loop);
    cli = std::make_unique<Rpc>(&loop);
    addr = srv_rpc->listen("127.0.0.1:0");
    BlockServerOptions o;
    o.model_name = "stories";
    o.cache_tokens = 64;
    o.max_sessions_per_peer = 3;
    o.step_delay_ms = delay_ms;
    if (tweak) tweak(o);
    server = std::make_unique<BlockServer>(*srv_rpc, m, *pool, o);
  }
  void TearDown() override {
    if (!server) return;
    server->stop();
    run_until(&loop, [&] { return !server->busy(); });
    cli->close();
    srv_rpc->close();
    server.reset();
    cli.reset();
    srv_rpc.reset();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  Reply call(const std::string& method, std::string args, std::string* result = nullptr, Rpc* from = nullptr) {
    Reply out;
    bool done = false;
    (from ? from : cli.get())->call(addr, method, std::move(args), 5000, [&](const Reply& r) {
      out.code = r.code;
      out.message = r.message;
      if (r.ok() && result) *result = pack_object(*r.result);
      done = true;
    });
    EXPECT_TRUE(run_until(&loop, [&] { return done; }));
    return out;
  }
  std::string open_args(int64_t a, int64_t b, int64_t len, uint64_t wait_ms = 0) {
    Buf x;
    Packer pk(x);
    pk.pack_map(4);
    pack_str(pk, "first"), pk.pack_int64(a);
    pack_str(pk, "last"), pk.pack_int64(b);
    pack_str(pk, "max_length"), pk.pack_int64(len);
    pack_str(pk, "wait_ms"), pk.pack_uint64(wait_ms);
    return x.s;
  }
  uint64_t open(int64_t a, int64_t b, int64_t len) {
    std::string res;
    Reply r = call("blocks.open", open_args(a, b, len), &res);
    EXPECT_TRUE(r.ok()) << r.message;
    if (!r.ok()) return 0;
    auto oh = unpack_untrusted(res.data(), res.size());
    return as_uint(need_field(oh.get(), "session"), "session");
  }
  std::string step_args(uint64_t session, const std::vector<float>& h, int64_t n, DType dt = DType::F32,
                        int64_t width = -1) {
    Buf x;
    Packer pk(x);
    pk.pack_map(2);
    pack_str(pk, "session"), pk.pack_uint64(session);
    pack_str(pk, "hidden");
    if (width < 0) pack_hidden(pk, dt, h.data(), n, E);
    else pack_tensor(pk, DType::F32, {n, width}, h.data(), (size_t)(n * width) * 4);
    return x.s;
  }
  std::vector<float> hidden(int64_t n, float seed) {
    std::vector<float> h((size_t)(n * E));
    for (size_t i = 0; i < h.size(); i++) h[i] = 0.1f * std::sin(seed + 0.37f * (float)i);
    return h;
  }
};

}  // namespace

TEST_F(BlockServerTest, StepsMatchALocalForward) {
  uint64_t s = open(1, 4, 16);
  ASSERT_NE(s, 0u);
  LlamaLoadOptions lo;
  lo.first_block = 1, lo.last_block = 4, lo.embeddings = false, lo.head = false;
  auto local = LlamaModel::load(file, lo);
  KVCache cache(local->hparams(), 1, 4, 16);
  ThreadPool lp(1);
  for (int64_t n : {3, 1, 1}) {
    auto h = hidden(n, (float)n);
    std::string res;
    ASSERT_TRUE(call("blocks.step", step_args(s, h, n), &res).ok());
    auto oh = unpack_untrusted(res.data(), res.size());
    std::vector<float> got;
    int64_t m = 0;
    unpack_hidden(unpack_tensor(need_field(oh.get(), "hidden")), E, n, got, &m);
    local->forward(cache, h.data(), n, lp);
    EXPECT_EQ(got, h);  // bit for bit: f32 on the wire
  }
}

TEST_F(BlockServerTest, BadRequestsGetErrorsAndTheServerKeepsServing) {
  uint64_t s = open(1, 4, 4);
  ASSERT_NE(s, 0u);
  auto h = hidden(2, 1);
  // Unknown session, wrong width, wrong dtype (q8_0 is not a hidden-state type), zero positions.
  EXPECT_EQ(call("blocks.step", step_args(s + 1, h, 2)).code, ErrorCode::kNotFound);
  EXPECT_EQ(call("blocks.step", step_args(s, h, 1, DType::F32, E / 2)).code, ErrorCode::kBadRequest);
  {
    Buf x;
    Packer pk(x);
    pk.pack_map(2);
    pack_str(pk, "session"), pk.pack_uint64(s);
    pack_str(pk, "hidden");
    std::vector<uint8_t> q(34 * (size_t)E / 32 * 2, 0);
    pack_tensor(pk, DType::Q8_0, {2, E}, q.data(), q.size());
    EXPECT_EQ(call("blocks.step", x.s).code, ErrorCode::kBadRequest);
  }
  EXPECT_EQ(call("blocks.step", step_args(s, h, 0)).code, ErrorCode::kBadRequest);
  // Missing fields, wrong types.
  EXPECT_EQ(call("blocks.step", empty_map()).code, ErrorCode::kBadRequest);
  EXPECT_EQ(call("blocks.open", empty_map()).code, ErrorCode::kBadRequest);
  // Too long for the session: 4 positions allowed.
  auto h5 = hidden(5, 2);
  Reply r = call("blocks.step", step_args(s, h5, 5));
  EXPECT_EQ(r.code, ErrorCode::kBadRequest);
  EXPECT_NE(r.message.find("too long"), std::string::npos) << r.message;
  // A position that does not match the session's.
  {
    Buf x;
    Packer pk(x);
    pk.pack_map(3);
    pack_str(pk, "session"), pk.pack_uint64(s);
    pack_str(pk, "position"), pk.pack_int64(7);
    pack_str(pk, "hidden"), pack_hidden(pk, DType::F32, h.data(), 2, E);
    EXPECT_EQ(call("blocks.step", x.s).code, ErrorCode::kBadRequest);
  }
  // Blocks not served, lengths out of range, a session bigger than the whole budget.
  EXPECT_EQ(call("blocks.open", open_args(0, 2, 4)).code, ErrorCode::kNotFound);
  EXPECT_EQ(call("blocks.open", open_args(3, 3, 4)).code, ErrorCode::kNotFound);
  EXPECT_EQ(call("blocks.open", open_args(1, 4, 0)).code, ErrorCode::kBadRequest);
  EXPECT_EQ(call("blocks.open", open_args(1, 4, 65)).code, ErrorCode::kRejected);
  // Still serving: a valid step works, f16 too.
  EXPECT_TRUE(call("blocks.step", step_args(s, h, 2)).ok());
  EXPECT_TRUE(call("blocks.step", step_args(s, h, 2, DType::F16)).ok());
  EXPECT_TRUE(call("blocks.close", [&] {
                Buf x;
                Packer pk(x);
                pk.pack_map(1);
                pack_str(pk, "session"), pk.pack_uint64(s);
                return x.s;
              }()).ok());
  EXPECT_EQ(call("blocks.step", step_args(s, h, 2)).code, ErrorCode::kNotFound);  // closed
  EXPECT_GT(server->stats().errors, 10u);
}

TEST_F(BlockServerTest, CacheBudgetIsEnforcedAndReturned) {
  EXPECT_EQ(server->cache_tokens_left(), 64);
  uint64_t a = open(1, 4, 40);
  EXPECT_EQ(server->cache_tokens_left(), 24);
  // No room: refused at once without wait_ms...
  Reply r = call("blocks.open", open_args(1, 4, 40));
  EXPECT_EQ(r.code, ErrorCode::kOverloaded);
  // ...and admitted when room appears while it waits.
  bool done = false;
  Reply waited;
  cli->call(addr, "blocks.open", open_args(1, 4, 40, 3000), 5000, [&](const Reply& rr) {
    waited.code = rr.code;
    done = true;
  });
  run_until(&loop, [] { return false; }, 100);
  EXPECT_FALSE(done);
  Buf x;
  Packer pk(x);
  pk.pack_map(1);
  pack_str(pk, "session"), pk.pack_uint64(a);
  EXPECT_TRUE(call("blocks.close", x.s).ok());
  EXPECT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_TRUE(waited.ok());
  EXPECT_EQ(server->cache_tokens_left(), 24);
  // A sub-span costs only its blocks: 1 of 3 blocks for 60 positions = 20 span tokens.
  EXPECT_NE(open(2, 3, 60), 0u);
  EXPECT_EQ(server->cache_tokens_left(), 4);
  // One peer may hold at most 3 sessions.
  EXPECT_NE(open(1, 2, 1), 0u);
  Reply r4 = call("blocks.open", open_args(1, 2, 1));
  EXPECT_EQ(r4.code, ErrorCode::kRejected);
  EXPECT_NE(r4.message.find("too many sessions"), std::string::npos) << r4.message;
}

// The training RPCs' request: blocks [a, b), hidden [B][n][E] (and grad, prompts).
std::string train_args(int64_t a, int64_t b, const std::vector<float>& h, int64_t B, int64_t n, int64_t E,
                       const std::vector<float>* grad = nullptr, const std::vector<float>* prompts = nullptr,
                       int64_t P = 0) {
  Buf x;
  Packer pk(x);
  pk.pack_map(3 + (grad ? 1 : 0) + (prompts ? 1 : 0));
  pack_str(pk, "first"), pk.pack_int64(a);
  pack_str(pk, "last"), pk.pack_int64(b);
  pack_str(pk, "hidden"), pack_batch(pk, DType::F32, h.data(), B, n, E);
  if (grad) pack_str(pk, "grad"), pack_batch(pk, DType::F32, grad->data(), B, n, E);
  if (prompts) {
    pack_str(pk, "prompts");
    pack_tensor(pk, DType::F32, {b - a, P, E}, prompts->data(), prompts->size() * sizeof(float));
  }
  return x.s;
}

std::vector<float> field_floats(const std::string& res, const char* name) {
  auto oh = unpack_untrusted(res.data(), res.size());
  TensorView t = unpack_tensor(need_field(oh.get(), name));
  EXPECT_EQ(t.dtype, DType::F32);
  std::vector<float> v(t.data.size() / sizeof(float));
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

// Stateless forward is the training forward (f32 activations, each sequence its
// own causal window), with deep prompts added before each block.
TEST_F(BlockServerTest, StatelessForwardEqualsTheTrainingForward) {
  const int64_t B = 2, n = 5, P = 2;
  auto h = hidden(B * n, 3);
  auto prompts = hidden(3 * P, 9);
  std::string res;
  ASSERT_TRUE(call("blocks.forward", train_args(1, 4, h, B, n, E, nullptr, &prompts, P), &res).ok());
  std::vector<float> got = field_floats(res, "hidden");
  LlamaLoadOptions lo;
  lo.first_block = 1, lo.last_block = 4, lo.embeddings = false, lo.head = false;
  auto local = LlamaModel::load(file, lo);
  ThreadPool lp(1);
  std::vector<float> want = h;
  DeepPrompts deep{prompts.data(), P, nullptr};
  for (int64_t i = 0; i < B; i++) llama_span_forward_train(*local, 1, 4, want.data() + i * n * E, n, lp, nullptr, &deep);
  EXPECT_EQ(got, want);
  // One sequence as [n][E] works too, and a sub-span.
  ASSERT_TRUE(call("blocks.forward", [&] {
                Buf x;
                Packer pk(x);
                pk.pack_map(3);
                pack_str(pk, "first"), pk.pack_int64(2);
                pack_str(pk, "last"), pk.pack_int64(3);
                pack_str(pk, "hidden"), pack_hidden(pk, DType::F32, h.data(), n, E);
                return x.s;
              }(), &res).ok());
  want.assign(h.begin(), h.begin() + n * E);
  llama_span_forward_train(*local, 2, 3, want.data(), n, lp);
  EXPECT_EQ(field_floats(res, "hidden"), want);
}

// Stateless backward returns the span's input gradient and the deep prompts'
// gradient summed over the batch: what the local span backward computes.
TEST_F(BlockServerTest, StatelessBackwardEqualsTheLocalBackward) {
  const int64_t B = 3, n = 4, P = 2;
  auto h = hidden(B * n, 1);
  auto g = hidden(B * n, 5);
  auto prompts = hidden(3 * P, 7);
  std::string res;
  Reply r = call("blocks.backward", train_args(1, 4, h, B, n, E, &g, &prompts, P), &res);
  ASSERT_TRUE(r.ok()) << r.message;
  LlamaLoadOptions lo;
  lo.first_block = 1, lo.last_block = 4, lo.embeddings = false, lo.head = false;
  auto local = LlamaModel::load(file, lo);
  ThreadPool lp(1);
  std::vector<float> dx = g, pg(prompts.size(), 0.0f);
  for (int64_t i = 0; i < B; i++) {
    std::vector<float> pgi(prompts.size(), 0.0f);
    DeepPrompts deep{prompts.data(), P, pgi.data()};
    llama_span_backward_from_input(*local, 1, 4, h.data() + i * n * E, dx.data() + i * n * E, n, lp, &deep);
    for (size_t k = 0; k < pg.size(); k++) pg[k] += pgi[k];
  }
  EXPECT_EQ(field_floats(res, "grad"), dx);
  EXPECT_EQ(field_floats(res, "prompts_grad"), pg);
  EXPECT_EQ(server->stats().backwards, 1u);
}

TEST_F(BlockServerTest, BadTrainingRequestsGetErrors) {
  const int64_t B = 2, n = 3;
  auto h = hidden(B * n, 2);
  auto g = hidden(B * n, 4);
  auto short_g = hidden(n, 4);
  auto prompts = hidden(3 * 2, 7);
  // Missing grad; grad of another shape; prompts with the wrong block count or longer than n.
  EXPECT_EQ(call("blocks.backward", train_args(1, 4, h, B, n, E)).code, ErrorCode::kBadRequest);
  {
    Buf x;
    Packer pk(x);
    pk.pack_map(4);
    pack_str(pk, "first"), pk.pack_int64(1);
    pack_str(pk, "last"), pk.pack_int64(4);
    pack_str(pk, "hidden"), pack_batch(pk, DType::F32, h.data(), B, n, E);
    pack_str(pk, "grad"), pack_batch(pk, DType::F32, short_g.data(), 1, n, E);
    Reply r = call("blocks.backward", x.s);
    EXPECT_EQ(r.code, ErrorCode::kBadRequest);
    EXPECT_NE(r.message.find("differ in shape"), std::string::npos) << r.message;
  }
  EXPECT_EQ(call("blocks.forward", train_args(1, 3, h, B, n, E, nullptr, &prompts, 2)).code, ErrorCode::kBadRequest);
  auto long_prompts = hidden(3 * 4, 7);
  EXPECT_EQ(call("blocks.forward", train_args(1, 4, h, B, n, E, nullptr, &long_prompts, 4)).code,
            ErrorCode::kBadRequest);
  // Blocks not served; a rank-4 tensor; more positions than a request may carry (2048).
  EXPECT_EQ(call("blocks.forward", train_args(0, 4, h, B, n, E)).code, ErrorCode::kNotFound);
  {
    Buf x;
    Packer pk(x);
    pk.pack_map(3);
    pack_str(pk, "first"), pk.pack_int64(1);
    pack_str(pk, "last"), pk.pack_int64(4);
    pack_str(pk, "hidden"), pack_tensor(pk, DType::F32, {1, B, n, E}, h.data(), h.size() * 4);
    EXPECT_EQ(call("blocks.forward", x.s).code, ErrorCode::kBadRequest);
  }
  {
    std::vector<float> big((size_t)(1025 * 2 * E), 0.0f);
    Reply r = call("blocks.forward", train_args(1, 4, big, 1025, 2, E));
    EXPECT_EQ(r.code, ErrorCode::kBadRequest);
  }
  // Deep prompts on an inference step: one per block of the session, at most n rows.
  uint64_t sid = open(1, 4, 8);
  auto step_with_prompts = [&](int64_t blocks, int64_t k) {
    Buf x;
    Packer pk(x);
    pk.pack_map(3);
    pack_str(pk, "session"), pk.pack_uint64(sid);
    pack_str(pk, "hidden"), pack_hidden(pk, DType::F32, h.data(), n, E);
    auto pr = hidden(blocks * k, 3);
    pack_str(pk, "prompts"), pack_tensor(pk, DType::F32, {blocks, k, E}, pr.data(), pr.size() * 4);
    return call("blocks.step", x.s).code;
  };
  EXPECT_EQ(step_with_prompts(2, 1), ErrorCode::kBadRequest);
  EXPECT_EQ(step_with_prompts(3, n + 1), ErrorCode::kBadRequest);
  EXPECT_EQ(step_with_prompts(3, 2), ErrorCode::kOk);
  // Still serving.
  EXPECT_TRUE(call("blocks.backward", train_args(1, 4, h, B, n, E, &g)).ok());
}

struct SlowBlockServerTest : BlockServerTest {
  SlowBlockServerTest() { delay_ms = 200; }
};

// Inference steps overtake queued forward/backward jobs: a step sent after four
// backward requests finishes right after the one already running.
TEST_F(SlowBlockServerTest, InferenceStepsGoBeforeQueuedTraining) {
  const int64_t n = 2;
  auto h = hidden(n, 2);
  uint64_t s = open(1, 4, 8);
  ASSERT_NE(s, 0u);
  std::vector<std::string> finished;
  int pending = 0;
  auto send = [&](const std::string& method, std::string args, const std::string& name) {
    pending++;
    cli->call(addr, method, std::move(args), 10000, [&, name](const Reply& r) {
      EXPECT_TRUE(r.ok()) << name << ": " << r.message;
      finished.push_back(name);
      pending--;
    });
  };
  for (int i = 0; i < 4; i++) send("blocks.backward", train_args(1, 4, h, 1, n, E, &h), "backward" + std::to_string(i));
  // Let the four arrive (the first starts running), then the step.
  run_until(&loop, [&] { return server->busy(); });
  run_until(&loop, [] { return false; }, 20);
  send("blocks.step", step_args(s, h, n), "step");
  ASSERT_TRUE(run_until(&loop, [&] { return pending == 0; }, 20000));
  ASSERT_EQ(finished.size(), 5u);
  const auto at = std::find(finished.begin(), finished.end(), "step") - finished.begin();
  EXPECT_LE(at, 1) << "the step waited behind queued training jobs";
}

// A peer may queue only a few training jobs: more are refused as overloaded.
TEST_F(SlowBlockServerTest, QueuedTrainingIsBoundedPerPeer) {
  const int64_t n = 2;
  auto h = hidden(n, 2);
  int ok = 0, overloaded = 0, pending = 0;
  for (int i = 0; i < 7; i++) {
    pending++;
    cli->call(addr, "blocks.forward", train_args(1, 4, h, 1, n, E), 10000, [&](const Reply& r) {
      if (r.ok()) ok++;
      else if (r.code == ErrorCode::kOverloaded) overloaded++;
      pending--;
    });
  }
  ASSERT_TRUE(run_until(&loop, [&] { return pending == 0; }, 20000));
  EXPECT_EQ(ok, 4);  // max_train_jobs_per_peer
  EXPECT_EQ(overloaded, 3);
}

// Limits on what one client, and one address, may hold (docs/protocol.md,
// "What an attacker can cost a server").
struct BoundedBlockServerTest : BlockServerTest {
  BoundedBlockServerTest() {
    tweak = [](BlockServerOptions& o) {
      o.max_sessions_per_peer = 2;
      o.max_sessions_per_ip = 3;
      o.max_cache_tokens_per_peer = 24;  // of 64
      o.orphan_timeout_ms = 300;
    };
  }
};

// Fresh ids are free to mint: a second id at the same address shares its quota.
TEST_F(BoundedBlockServerTest, SessionsAreCappedPerIdAndPerAddress) {
  Rpc other(&loop);  // another id, same IP (127.0.0.1)
  EXPECT_NE(open(1, 2, 4), 0u);
  EXPECT_NE(open(1, 2, 4), 0u);
  Reply r = call("blocks.open", open_args(1, 2, 4));
  EXPECT_EQ(r.code, ErrorCode::kRejected);
  EXPECT_NE(r.message.find("from this peer"), std::string::npos) << r.message;
  EXPECT_TRUE(call("blocks.open", open_args(1, 2, 4), nullptr, &other).ok());
  Reply r2 = call("blocks.open", open_args(1, 2, 4), nullptr, &other);
  EXPECT_EQ(r2.code, ErrorCode::kRejected);
  EXPECT_NE(r2.message.find("from this address"), std::string::npos) << r2.message;
  EXPECT_EQ(server->session_count(), 3u);
  other.close();
}

TEST_F(BoundedBlockServerTest, CacheIsSharedOutPerIdAndPerAddress) {
  // 3 blocks x 6 positions = 18 block-positions = 6 span tokens; the share is 24.
  EXPECT_NE(open(1, 4, 6), 0u);
  Reply r = call("blocks.open", open_args(1, 4, 20));  // 6 + 20 > 24
  EXPECT_EQ(r.code, ErrorCode::kRejected);
  EXPECT_NE(r.message.find("cache share"), std::string::npos) << r.message;
  Rpc other(&loop);
  Reply r2 = call("blocks.open", open_args(1, 4, 20), nullptr, &other);  // same address: same share
  EXPECT_EQ(r2.code, ErrorCode::kRejected);
  EXPECT_TRUE(call("blocks.open", open_args(1, 4, 18), nullptr, &other).ok());  // exactly fills it
  EXPECT_EQ(server->cache_tokens_left(), 64 - 24);  // the rest stays for other addresses
  other.close();
}

TEST_F(BoundedBlockServerTest, SessionsOfAVanishedClientAreFreed) {
  auto gone = std::make_unique<Rpc>(&loop);
  ASSERT_TRUE(call("blocks.open", open_args(1, 4, 8), nullptr, gone.get()).ok());
  EXPECT_NE(open(1, 4, 8), 0u);  // a client that stays
  EXPECT_EQ(server->session_count(), 2u);
  gone->close();  // its connection goes; no blocks.close was sent
  EXPECT_TRUE(run_until(&loop, [&] { return server->session_count() == 1; }));
  gone.reset();
  EXPECT_EQ(server->cache_tokens_left(), 64 - 8);
  // The staying client's session outlives the orphan timeout while it is connected.
  run_until(&loop, [] { return false; }, 800);
  EXPECT_EQ(server->session_count(), 1u);
}

// Fresh ids do not buy more queued training: the address is counted too.
struct SlowBoundedBlockServerTest : BlockServerTest {
  SlowBoundedBlockServerTest() {
    delay_ms = 200;
    tweak = [](BlockServerOptions& o) { o.max_train_jobs_per_ip = 5; };
  }
};

TEST_F(SlowBoundedBlockServerTest, QueuedTrainingIsBoundedPerAddress) {
  const int64_t n = 2;
  auto h = hidden(n, 2);
  Rpc other(&loop);  // another id at 127.0.0.1
  int ok = 0, overloaded = 0, pending = 0;
  for (int i = 0; i < 8; i++) {
    pending++;
    (i < 4 ? *cli : other).call(addr, "blocks.forward", train_args(1, 4, h, 1, n, E), 10000, [&](const Reply& r) {
      if (r.ok()) ok++;
      else if (r.code == ErrorCode::kOverloaded) overloaded++;
      pending--;
    });
  }
  ASSERT_TRUE(run_until(&loop, [&] { return pending == 0; }, 20000));
  EXPECT_EQ(ok, 5);  // 4 of the first id, then 1 of the second: 5 per address
  EXPECT_EQ(overloaded, 3);
  other.close();
}
