// SWARM pipeline messages and a stage peer's server, over a real Rpc on 127.0.0.1:
// activations round-trip in every wire dtype; the server computes exactly what
// part_forward / part_backward compute, gates requests by epoch (ok / stale /
// wait), adds backward gradients only while its epoch is open, and answers
// malformed requests with an error (the process goes on).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "train/net_thread.h"
#include "train/pipeline_messages.h"
#include "train/stage_compute.h"
#include "train/stage_server.h"

using namespace engine;
using namespace engine::train;

namespace {

LlamaHParams tiny_hp() {
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = 260, hp.n_embd = 32, hp.n_ff = 64, hp.n_layer = 2, hp.n_head = 4, hp.n_head_kv = 2;
  hp.head_dim = 8, hp.n_rot = 8, hp.n_ctx_train = 16, hp.rms_eps = 1e-5f, hp.rope_freq_base = 10000.0f;
  return hp;
}

std::vector<float> ramp(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = scale * (float)((int)(i * 7 % 23) - 11);
  return v;
}

struct Call {
  net::ErrorCode code = net::ErrorCode::kOk;
  std::string message;
  StageReply reply;
};

Call call(NetThread& client, const std::string& addr, const std::string& method, const std::string& body, int64_t B,
          int64_t n, int64_t d) {
  auto r = await<Call>(client, 10000, [&client, addr, method, body, B, n, d](std::function<void(Call)> done) {
    client.rpc().call(addr, method, body, 8000, [done, B, n, d](const net::Reply& rep) {
      Call c;
      c.code = rep.code, c.message = rep.message;
      if (rep.ok()) c.reply = decode_stage_reply(*rep.result, B, n, d);
      done(c);
    });
  });
  if (!r) throw Error("no answer");
  return *r;
}

}  // namespace

TEST(PipelineMessages, ActivationsRoundTripInEveryDtype) {
  const int64_t B = 2, n = 5, d = 8;
  const std::vector<float> x = ramp((size_t)(B * n * d), 0.37f);
  for (ActDType t : {ActDType::F32, ActDType::F16, ActDType::BF16, ActDType::Q8}) {
    StageRequest r;
    r.run = "run", r.stage = 1, r.epoch = 3, r.micro_batch = 9, r.samples = 2, r.tokens = 10;
    r.x.batch = r.dy.batch = B, r.x.n = r.dy.n = n, r.x.data = x, r.dy.data = x;
    const std::string body = encode_stage_request(r, true, t, d);
    auto oh = net::unpack_untrusted(body.data(), body.size());
    StageRequest b = decode_stage_request(oh.get(), true, d, 16, 64);
    EXPECT_EQ(b.run, "run");
    EXPECT_EQ(b.stage, 1);
    EXPECT_EQ(b.epoch, 3);
    EXPECT_EQ(b.samples, 2);
    EXPECT_EQ(b.x.dtype, t);
    // Relative for the float formats; int8: half a step of the block's largest value.
    const float rel = t == ActDType::F32 ? 0 : t == ActDType::F16 ? 1e-3f : t == ActDType::BF16 ? 8e-3f : 0;
    const float q8 = t == ActDType::Q8 ? 11 * 0.37f / 254 * 1.01f : 0;
    for (size_t i = 0; i < x.size(); i++) EXPECT_NEAR(b.x.data[i], x[i], rel * std::fabs(x[i]) + q8 + 1e-6f) << i;
    // 80 values: f32 4 bytes each, f16/bf16 2, int8 three blocks of 32 (the last padded) at 36.
    EXPECT_EQ(act_bytes(t, B * n * d), t == ActDType::F32 ? 320u : t == ActDType::Q8 ? 108u : 160u);
  }
}

TEST(PipelineMessages, RefusesWhatDoesNotFit) {
  const int64_t d = 8;
  StageRequest r;
  r.run = "run", r.x.batch = 4, r.x.n = 8, r.x.data = ramp(4 * 8 * d, 0.1f);
  const std::string body = encode_stage_request(r, false, ActDType::F16, d);
  auto oh = net::unpack_untrusted(body.data(), body.size());
  EXPECT_THROW(decode_stage_request(oh.get(), false, 16, 16, 64), net::BadMessage);  // another width
  EXPECT_THROW(decode_stage_request(oh.get(), false, d, 4, 64), net::BadMessage);    // windows too long
  EXPECT_THROW(decode_stage_request(oh.get(), false, d, 16, 16), net::BadMessage);   // too many positions
  EXPECT_THROW(decode_stage_request(oh.get(), true, d, 16, 64), net::BadMessage);    // backward without dy
  r.x.data[5] = NAN;
  const std::string nan_body = encode_stage_request(r, false, ActDType::F32, d);
  auto oh2 = net::unpack_untrusted(nan_body.data(), nan_body.size());
  EXPECT_THROW(decode_stage_request(oh2.get(), false, d, 16, 64), net::BadMessage);
  // A reply of another shape than asked.
  const std::vector<float> y = ramp(3 * 8 * d, 0.1f);
  const std::string reply = encode_stage_reply(StageStatus::Ok, 0, y.data(), 3, 8, d, ActDType::F16);
  auto oh3 = net::unpack_untrusted(reply.data(), reply.size());
  EXPECT_THROW(decode_stage_reply(oh3.get(), 4, 8, d), net::BadMessage);
}

TEST(StageServer, ComputesGatesByEpochAndRefusesMalformed) {
  const LlamaHParams hp = tiny_hp();
  const PartSpec spec = stage_part(hp, 2, 1);
  TrainState st;
  st.params = ModelParams::init_random_part(hp, spec, 3, 0.05f);
  PretrainConfig cfg;
  cfg.steps = 10, cfg.seqlen = 8;
  const TextData no_data;
  ThreadPool pool(1);
  Trainer t(std::move(st), no_data, cfg, pool);
  NetThread server_net("127.0.0.1:0", {}), client("127.0.0.1:0", {});
  StageServerConfig sc;
  sc.run = "r", sc.stage = 1, sc.max_n = 8, sc.max_windows = 4, sc.park_s = 0.2;
  StageServer server(server_net, t, pool, sc);
  const int64_t B = 2, n = 8, d = hp.n_embd;
  StageRequest q;
  q.run = "r", q.stage = 1, q.epoch = 0, q.x.batch = B, q.x.n = n, q.x.data = ramp((size_t)(B * n * d), 0.05f);
  const std::string addr = server_net.address();

  // Before the epoch opens: wait.
  Call c = call(client, addr, "swarm.fwd", encode_stage_request(q, false, ActDType::F32, d), B, n, d);
  ASSERT_TRUE(c.code == net::ErrorCode::kOk) << c.message;
  EXPECT_EQ(c.reply.status, StageStatus::Wait);

  std::vector<float> grad((size_t)t.state().params.size(), 0.0f);
  server.open(0, grad.data());
  c = call(client, addr, "swarm.fwd", encode_stage_request(q, false, ActDType::F32, d), B, n, d);
  ASSERT_EQ(c.reply.status, StageStatus::Ok);
  std::vector<float> want = q.x.data;
  part_forward(t.state().params, want.data(), B, n, pool);
  EXPECT_EQ(c.reply.y.data, want);  // f32 on the wire: exactly the local computation

  q.samples = 2, q.tokens = 16, q.dy.batch = B, q.dy.n = n, q.dy.data = ramp((size_t)(B * n * d), 0.01f);
  c = call(client, addr, "swarm.bwd", encode_stage_request(q, true, ActDType::F32, d), B, n, d);
  ASSERT_EQ(c.reply.status, StageStatus::Ok);
  std::vector<float> dx = q.dy.data, g((size_t)t.state().params.size(), 0.0f);
  part_backward(t.state().params, q.x.data.data(), dx.data(), B, n, g.data(), pool);
  EXPECT_EQ(c.reply.y.data, dx);
  const GradientSource::Got got = server.close();
  EXPECT_EQ(got.samples, 2);
  EXPECT_EQ(got.tokens, 16);
  EXPECT_EQ(grad, g);  // the weight gradients went into the epoch's sum

  // Closed epoch 0: its requests are stale; epoch 1 must wait until it opens.
  c = call(client, addr, "swarm.bwd", encode_stage_request(q, true, ActDType::F32, d), B, n, d);
  EXPECT_EQ(c.reply.status, StageStatus::Stale);
  q.epoch = 1;
  c = call(client, addr, "swarm.fwd", encode_stage_request(q, false, ActDType::F32, d), B, n, d);
  EXPECT_EQ(c.reply.status, StageStatus::Wait);
  EXPECT_TRUE(server.epoch_over(0));  // a trainer already called with epoch 1
  EXPECT_EQ(grad, g);                 // nothing added after close()

  // Another stage's request: "moved"; garbage and a wrong run: errors.
  q.stage = 0;
  c = call(client, addr, "swarm.fwd", encode_stage_request(q, false, ActDType::F32, d), B, n, d);
  EXPECT_EQ(c.reply.status, StageStatus::Moved);
  c = call(client, addr, "swarm.fwd", net::empty_map(), B, n, d);
  EXPECT_EQ(c.code, net::ErrorCode::kBadRequest);
  q.stage = 1, q.run = "other";
  c = call(client, addr, "swarm.fwd", encode_stage_request(q, false, ActDType::F32, d), B, n, d);
  EXPECT_EQ(c.code, net::ErrorCode::kBadRequest);
  q.run = "r", q.x.batch = 5, q.x.data = ramp((size_t)(5 * n * d), 0.05f);  // more windows than allowed
  c = call(client, addr, "swarm.fwd", encode_stage_request(q, false, ActDType::F32, d), 5, n, d);
  EXPECT_EQ(c.code, net::ErrorCode::kBadRequest);
  EXPECT_EQ(server.totals().bad, 2);
}
