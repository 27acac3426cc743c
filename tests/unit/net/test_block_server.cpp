// The block server on 127.0.0.1 with stories260K: steps equal a local forward,
// every kind of bad request gets an error reply, the cache budget holds, and
// the server keeps serving afterwards.
#include <gtest/gtest.h>

#include <filesystem>

#include "loop_util.h"
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
  Reply call(const std::string& method, std::string args, std::string* result = nullptr) {
    Reply out;
    bool done = false;
    cli->call(addr, method, std::move(args), 5000, [&](const Reply& r) {
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

TEST_F(BlockServerTest, StatelessForward) {
  auto h = hidden(4, 3);
  Buf x;
  Packer pk(x);
  pk.pack_map(3);
  pack_str(pk, "first"), pk.pack_int64(1);
  pack_str(pk, "last"), pk.pack_int64(4);
  pack_str(pk, "hidden"), pack_hidden(pk, DType::F32, h.data(), 4, E);
  std::string res;
  ASSERT_TRUE(call("blocks.forward", x.s, &res).ok());
  uint64_t s = open(1, 4, 8);
  std::string res2;
  ASSERT_TRUE(call("blocks.step", step_args(s, h, 4), &res2).ok());
  auto o1 = unpack_untrusted(res.data(), res.size());
  auto o2 = unpack_untrusted(res2.data(), res2.size());
  EXPECT_EQ(unpack_tensor(need_field(o1.get(), "hidden")).data, unpack_tensor(need_field(o2.get(), "hidden")).data);
}
