// Butterfly all-reduce round time and bytes on loopback: 3 peers, each with its
// own thread, libuv loop and Rpc (as separate processes would be), averaging
// vectors the size of small llama-style models, for each wire dtype.
//   avg_bench [floats...]   default: 3400000 (dim 256, 4 layers, 32k vocab)
//                                    50000000 (dim 1024, 4 layers, 32k vocab)
// Prints the median round time over the repetitions, payload bytes per member
// per round, and each dtype's time and bytes relative to f32 in the same run.
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "train/butterfly.h"

using namespace engine;
using namespace engine::train;

namespace {

constexpr int kPeers = 3;

struct Peer {
  uv_loop_t loop;
  std::unique_ptr<net::Rpc> rpc;
  std::unique_ptr<ButterflyAllReduce> avg;
  std::vector<float> x;
};

struct Run {
  double seconds = 0;             // slowest member
  uint64_t bytes_per_member = 0;  // sent + received as counted by done() (serving may go on after it)
  int failed = 0;
};

// Payload one member sends per round (it receives as much): its contribution to
// the others' parts, and its own part's result to each of the others.
double payload_sent(const std::vector<GroupMember>& m, int64_t n, WireDType t, int who) {
  auto off = partition(m, n);
  double b = 0;
  for (size_t j = 0; j + 1 < off.size(); j++) {
    double part = (double)wire_bytes(t, off[j + 1] - off[j]);
    b += (int)j == who ? part * (double)(m.size() - 1) : part;
  }
  return b;
}

// One round on every peer, each peer's loop on its own thread.
Run one_round(std::vector<std::unique_ptr<Peer>>& peers, const std::vector<GroupMember>& members,
              const std::string& round, const AllReduceConfig& cfg) {
  std::vector<AllReduceResult> res(kPeers);
  std::barrier sync(kPeers);
  std::atomic<int> finished{0};
  std::vector<std::thread> th;
  for (int i = 0; i < kPeers; i++) {
    th.emplace_back([&, i] {
      Peer& p = *peers[i];
      bool done = false;
      sync.arrive_and_wait();
      uv_update_time(&p.loop);
      p.avg->all_reduce(RoundSpec{round, members, i}, p.x, 1.0 + i, cfg, [&](AllReduceResult r) {
        res[i] = std::move(r);
        done = true;
      });
      while (!done) uv_run(&p.loop, UV_RUN_ONCE);
      // Keep the loop turning (replies may still sit in our write queues) until
      // every peer is done; a 1 ms timer keeps uv_run from blocking.
      finished++;
      uv_timer_t tick;
      uv_timer_init(&p.loop, &tick);
      uv_timer_start(&tick, [](uv_timer_t*) {}, 1, 1);
      while (finished < kPeers || p.avg->rounds_held()) uv_run(&p.loop, UV_RUN_ONCE);
      uv_close((uv_handle_t*)&tick, nullptr);
      uv_run(&p.loop, UV_RUN_NOWAIT);
    });
  }
  for (auto& t : th) t.join();
  Run r;
  for (auto& x : res) {
    r.seconds = std::max(r.seconds, x.seconds);
    r.bytes_per_member += (x.bytes_sent + x.bytes_received) / kPeers;
    r.failed += x.parts_failed;
  }
  return r;
}

void bench_size(int64_t n, int reps) {
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<GroupMember> members;
  std::mt19937 rng(1);
  std::normal_distribution<float> N(0.0f, 1e-3f);  // gradient-sized values
  for (int i = 0; i < kPeers; i++) {
    auto p = std::make_unique<Peer>();
    uv_loop_init(&p->loop);
    p->rpc = std::make_unique<net::Rpc>(&p->loop);
    GroupMember m;
    m.id = p->rpc->id();
    m.addr = p->rpc->listen("127.0.0.1:0");
    members.push_back(m);
    p->avg = std::make_unique<ButterflyAllReduce>(*p->rpc);
    p->x.resize(n);
    for (auto& v : p->x) v = N(rng);
    peers.push_back(std::move(p));
  }
  double f32_time = 0, f32_bytes = 0;
  static int round_no = 0;
  for (WireDType t : {WireDType::F32, WireDType::F16, WireDType::Q8}) {
    AllReduceConfig cfg;
    cfg.aggregator = Aggregator::Mean;
    cfg.wire = t;
    cfg.deadline_ms = 300000;
    std::vector<double> times;
    Run last;
    for (int r = 0; r < reps + 1; r++) {  // the first round warms up connections
      last = one_round(peers, members, "bench." + std::to_string(round_no++), cfg);
      if (r > 0 || reps == 0) times.push_back(last.seconds);
    }
    std::sort(times.begin(), times.end());
    double t_med = times[times.size() / 2];
    if (t == WireDType::F32) f32_time = t_med;
    double sent = payload_sent(members, n, t, 0);
    if (t == WireDType::F32) f32_bytes = sent;
    std::printf("%10lld floats  %-4s  round %7.3f s  sent %7.1f MB + received %7.1f MB per member  "
                "(%.1f MB counted by done())  %6.1f MB/s sent  time %.2fx f32  bytes %.3fx f32%s\n",
                (long long)n, wire_dtype_name(t), t_med, sent / 1e6, sent / 1e6, last.bytes_per_member / 1e6,
                sent / 1e6 / t_med, t_med / f32_time, sent / f32_bytes, last.failed ? "  (PARTS FAILED)" : "");
    std::fflush(stdout);
  }
  for (auto& p : peers) {
    p->avg.reset();
    p->rpc->close();
    p->rpc.reset();
    for (int i = 0; i < 100 && uv_loop_alive(&p->loop); i++) uv_run(&p->loop, UV_RUN_NOWAIT);
    uv_loop_close(&p->loop);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes;
  for (int i = 1; i < argc; i++) sizes.push_back(std::atoll(argv[i]));
  if (sizes.empty()) sizes = {3400000, 50000000};
  std::printf("butterfly all-reduce, %d peers on 127.0.0.1, one thread + loop each, mean, 1 MiB chunks, "
              "window 4 per reducer; %u hardware threads\n",
              kPeers, std::thread::hardware_concurrency());
  for (int64_t n : sizes) bench_size(n, n > 10000000 ? 1 : 3);
}
