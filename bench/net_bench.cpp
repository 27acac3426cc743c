// Network benchmarks on 127.0.0.1, each side in its own process (fork):
//   1. request round trips: sequential latency and pipelined rate
//   2. a 16 MiB tensor streamed as RPC parts vs. a plain TCP copy of the same
//      bytes, measured in the same run (the ratio is the number that matters)
//   3. a 100-node DHT: hops, messages and latency per lookup, for plain and
//      for signed (owned-subkey) values, and signature checks per second
//   4. a private swarm (--swarm-key: sealed records) against an open one, in
//      one run: tensor throughput, request rate, handshake cost per connection
// Prints ratios and measurements, never a verdict.
// Usage: net_bench [--nodes N] [--lookups N] [--skip-dht] [--skip-rpc] [--only-key]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "net/dht_node.h"

using namespace engine::net;
using Clock = std::chrono::steady_clock;

static double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

static std::vector<pid_t> g_children;
static void reap_children() {
  for (pid_t p : g_children) kill(p, SIGKILL);
  for (pid_t p : g_children) waitpid(p, nullptr, 0);
  g_children.clear();
}

// Forks a child that runs fn(write_fd) and exits; the parent reads one line
// (an address) from the pipe.
template <class F>
static std::string spawn(F fn) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    fn(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  g_children.push_back(pid);
  std::string line;
  char c;
  while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;
  close(fds[0]);
  return line;
}

static void announce(int fd, const std::string& addr) {
  std::string s = addr + "\n";
  if (write(fd, s.data(), s.size()) < 0) _exit(1);
  close(fd);
}

static Limits bench_limits() {
  Limits L;
  L.max_requests_per_s = 0;  // the benchmark is the flood
  L.max_inflight = 4096;
  return L;
}

constexpr size_t kTensorBytes = 16u << 20;
constexpr size_t kPartBytes = 1u << 20;

// ---- server process for RPC benchmarks ----------------------------------------

static std::shared_ptr<const SwarmKey> bench_key() {
  auto k = std::make_shared<SwarmKey>();
  k->fill(0x42);
  return k;
}

static void rpc_server(int fd, bool keyed = false) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  RpcOptions o;
  o.limits = bench_limits();
  if (keyed) o.swarm_key = bench_key();
  Rpc rpc(&loop, o);
  std::string addr = rpc.listen("127.0.0.1:0");
  rpc.handle("echo", [](Request& r) { r.respond(pack_object(r.args)); });
  // Streams a 16 MiB f16 tensor as 1 MiB parts, pacing on the write queue.
  auto tensor = std::make_shared<std::vector<uint16_t>>(kTensorBytes / 2, 0x3c00);
  rpc.handle("pull", [&](Request& r) {
    auto next = std::make_shared<size_t>(0);
    auto resp = std::make_shared<Responder>(r.responder);
    auto pump = std::make_shared<std::function<void()>>();
    *pump = [&, next, resp, pump] {
      while (*next < kTensorBytes) {
        if (resp->queued() > (4u << 20)) {
          resp->when_writable(*pump);
          return;
        }
        size_t n = std::min(kPartBytes, kTensorBytes - *next);
        // Zero-copy: the part's data goes out straight from the tensor.
        std::string_view data((const char*)tensor->data() + *next, n);
        *next += n;
        resp->send_part_ref(tensor_head(engine::DType::F16, {(int64_t)(n / 2)}, n), data, tensor,
                            *next == kTensorBytes);
      }
      resp->respond(empty_map());
      *pump = nullptr;  // break the self-reference
    };
    (*pump)();
  });
  announce(fd, addr);
  uv_run(&loop, UV_RUN_DEFAULT);
}

// ---- plain TCP baseline -----------------------------------------------------------

static void tcp_server(int fd) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, (sockaddr*)&a, sizeof a);
  listen(s, 8);
  socklen_t len = sizeof a;
  getsockname(s, (sockaddr*)&a, &len);
  announce(fd, "127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  std::vector<char> buf(kTensorBytes, 1);
  for (;;) {
    int c = accept(s, nullptr, nullptr);
    if (c < 0) continue;
    char go;
    while (recv(c, &go, 1, 0) == 1) {  // one byte asks for one copy
      size_t off = 0;
      while (off < buf.size()) {
        ssize_t n = send(c, buf.data() + off, buf.size() - off, 0);
        if (n <= 0) break;
        off += (size_t)n;
      }
    }
    close(c);
  }
}

// ---- client side ------------------------------------------------------------------

static bool run_until(uv_loop_t* loop, const std::function<bool()>& done) {
  while (!done())
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !done()) return false;
  return true;
}

static void bench_rpc(const std::string& addr) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  RpcOptions o;
  o.limits = bench_limits();
  Rpc rpc(&loop, o);
  Buf args;
  Packer pk(args);
  pk.pack_map(1);
  pack_str(pk, "n");
  pk.pack_uint64(12345);

  // Sequential: one request in flight.
  int done = 0;
  auto one = [&] { rpc.call(addr, "echo", args.s, 5000, [&](const Reply& r) { done += r.ok(); }); };
  one();
  run_until(&loop, [&] { return done == 1; });  // connect + handshake outside the timing
  const int kSeq = 20000;
  done = 0;
  auto t0 = Clock::now();
  std::function<void(const Reply&)> again = [&](const Reply& r) {
    if (!r.ok()) return;
    if (++done < kSeq) rpc.call(addr, "echo", args.s, 5000, again);
  };
  rpc.call(addr, "echo", args.s, 5000, again);
  run_until(&loop, [&] { return done >= kSeq; });
  double seq = secs_since(t0);
  std::printf("rpc round trip (1 in flight):   %8.1f us   %9.0f calls/s\n", seq / kSeq * 1e6, kSeq / seq);

  // Pipelined: 64 in flight.
  const int kPipe = 100000;
  int sent = 0;
  done = 0;
  t0 = Clock::now();
  std::function<void(const Reply&)> refill = [&](const Reply& r) {
    done += r.ok();
    if (sent < kPipe) {
      sent++;
      rpc.call(addr, "echo", args.s, 5000, refill);
    }
  };
  for (; sent < 64; sent++) rpc.call(addr, "echo", args.s, 5000, refill);
  run_until(&loop, [&] { return done >= kPipe; });
  double pipe = secs_since(t0);
  std::printf("rpc pipelined (64 in flight):   %8.1f us   %9.0f calls/s   (%.2fx the sequential rate)\n",
              pipe / kPipe * 1e6, kPipe / pipe, (kPipe / pipe) / (kSeq / seq));

  // 16 MiB tensor as parts, copied into a destination buffer as it arrives,
  // alternating with a plain TCP copy so both see the same machine load.
  std::string tcp_addr = spawn(tcp_server);
  Address ta = Address::parse(tcp_addr);
  int ts = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(ts, ta.sa(), sizeof(sockaddr_in)) != 0) std::abort();
  std::vector<char> dst(kTensorBytes), tdst(kTensorBytes);
  std::vector<double> rpc_s, tcp_s, ratios;
  for (int rep = 0; rep < 11; rep++) {
    size_t got = 0;
    bool fin = false;
    t0 = Clock::now();
    rpc.call(addr, "pull", empty_map(), 30000, [&](const Reply& r) { fin = true, got = r.ok() ? got : 0; },
             [&](const msgpack::object& part, bool) {
               TensorView t = unpack_tensor(part);
               if (got + t.data.size() <= dst.size()) std::memcpy(dst.data() + got, t.data.data(), t.data.size());
               got += t.data.size();
             });
    run_until(&loop, [&] { return fin; });
    double r_s = secs_since(t0);
    t0 = Clock::now();
    char go = 1;
    if (send(ts, &go, 1, 0) != 1) std::abort();
    size_t tgot = 0;
    while (tgot < tdst.size()) {
      ssize_t n = recv(ts, tdst.data() + tgot, tdst.size() - tgot, 0);
      if (n <= 0) std::abort();
      tgot += (size_t)n;
    }
    double t_s = secs_since(t0);
    if (rep == 0 || got != kTensorBytes) continue;  // first round: page faults, connection setup
    rpc_s.push_back(r_s);
    tcp_s.push_back(t_s);
    ratios.push_back(t_s / r_s);
  }
  close(ts);
  rpc.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double gb = kTensorBytes / 1e9, rm = median(rpc_s), tm = median(tcp_s);
  std::printf("16 MiB tensor, rpc stream:      %8.2f ms   %6.2f GB/s  (median of %zu)\n", rm * 1e3, gb / rm, rpc_s.size());
  std::printf("16 MiB plain TCP copy:          %8.2f ms   %6.2f GB/s  (interleaved with the above)\n", tm * 1e3, gb / tm);
  std::printf("rpc / plain TCP throughput:     %8.2f   median of per-round ratios (min %.2f, max %.2f)\n",
              median(ratios), *std::min_element(ratios.begin(), ratios.end()),
              *std::max_element(ratios.begin(), ratios.end()));
}

// ---- private vs open swarm ---------------------------------------------------------

// One client per server; rounds alternate open/keyed so both see the same load.
static void bench_swarm_key() {
  std::string addrs[2] = {spawn([](int fd) { rpc_server(fd, false); }), spawn([](int fd) { rpc_server(fd, true); })};
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::unique_ptr<Rpc> rpc[2];
  for (int k = 0; k < 2; k++) {
    RpcOptions o;
    o.limits = bench_limits();
    if (k) o.swarm_key = bench_key();
    rpc[k] = std::make_unique<Rpc>(&loop, o);
  }
  auto pull = [&](int k) {
    size_t got = 0;
    bool fin = false;
    auto t0 = Clock::now();
    rpc[k]->call(addrs[k], "pull", empty_map(), 30000, [&](const Reply&) { fin = true; },
                 [&](const msgpack::object& part, bool) { got += unpack_tensor(part).data.size(); });
    run_until(&loop, [&] { return fin; });
    return got == kTensorBytes ? secs_since(t0) : -1.0;
  };
  auto echoes = [&](int k, int n) {  // 64 in flight
    int sent = 0, done = 0;
    auto t0 = Clock::now();
    std::function<void(const Reply&)> refill = [&](const Reply& r) {
      done += r.ok();
      if (sent < n) sent++, rpc[k]->call(addrs[k], "echo", empty_map(), 5000, refill);
    };
    for (; sent < 64; sent++) rpc[k]->call(addrs[k], "echo", empty_map(), 5000, refill);
    run_until(&loop, [&] { return done >= n; });
    return secs_since(t0);
  };
  // A new connection: TCP connect, handshakes, one echo (identity made beforehand).
  auto fresh = [&](int k) {
    RpcOptions o;
    o.limits = bench_limits();
    if (k) o.swarm_key = bench_key();
    Rpc c(&loop, o);
    bool fin = false;
    auto t0 = Clock::now();
    c.call(addrs[k], "echo", empty_map(), 5000, [&](const Reply&) { fin = true; });
    run_until(&loop, [&] { return fin; });
    double t = secs_since(t0);
    c.close();
    for (int i = 0; i < 4; i++) uv_run(&loop, UV_RUN_NOWAIT);
    return t;
  };
  auto rtt = [&](int k, int n) {  // one in flight, on the open connection
    int done = 0;
    auto t0 = Clock::now();
    std::function<void(const Reply&)> again = [&](const Reply&) {
      if (++done < n) rpc[k]->call(addrs[k], "echo", empty_map(), 5000, again);
    };
    rpc[k]->call(addrs[k], "echo", empty_map(), 5000, again);
    run_until(&loop, [&] { return done >= n; });
    return secs_since(t0) / n;
  };
  for (int k = 0; k < 2; k++) pull(k), echoes(k, 1000);  // warm up: connections, page faults
  std::vector<double> big[2], small[2], conn[2], one[2], big_ratio, small_ratio;
  for (int round = 0; round < 9; round++) {
    for (int k = 0; k < 2; k++) {
      big[k].push_back(pull(k));
      small[k].push_back(echoes(k, 20000));
      one[k].push_back(rtt(k, 2000));
      for (int i = 0; i < 20; i++) conn[k].push_back(fresh(k));
    }
    big_ratio.push_back(big[0].back() / big[1].back());
    small_ratio.push_back(small[0].back() / small[1].back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const char* name[2] = {"open ", "keyed"};
  for (int k = 0; k < 2; k++) {
    std::printf("%s 16 MiB tensor stream:    %6.2f GB/s   64-in-flight echo: %8.0f calls/s   new connection + "
                "first call: %7.1f us (round trip alone %5.1f us)\n",
                name[k], kTensorBytes / 1e9 / median(big[k]), 20000 / median(small[k]), median(conn[k]) * 1e6,
                median(one[k]) * 1e6);
  }
  std::printf("keyed / open: tensor throughput %.3f (min %.3f), request rate %.3f (min %.3f); swarm-key handshake "
              "adds %.1f us per connection (medians of 9 interleaved rounds)\n",
              median(big_ratio), *std::min_element(big_ratio.begin(), big_ratio.end()), median(small_ratio),
              *std::min_element(small_ratio.begin(), small_ratio.end()), (median(conn[1]) - median(conn[0])) * 1e6);
  for (auto& r : rpc) r->close();
  rpc[0].reset(), rpc[1].reset();
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

// ---- DHT ----------------------------------------------------------------------------

static DhtOptions bench_dht_opts() {
  DhtOptions o;
  o.rpc_timeout_ms = 3000;
  o.refresh_interval_ms = 600000;
  o.republish_interval_ms = 600000;
  return o;
}

static void dht_node_process(const std::string& bootstrap, int fd) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  RpcOptions ro;
  ro.limits = bench_limits();
  Rpc rpc(&loop, ro);
  std::string addr = rpc.listen("127.0.0.1:0");
  DhtNode node(rpc, bench_dht_opts());
  if (bootstrap.empty()) {
    announce(fd, addr);
  } else {
    node.bootstrap({bootstrap}, [&, fd](size_t, const std::string&) { announce(fd, addr); });
  }
  uv_run(&loop, UV_RUN_DEFAULT);
}

// Signed records (net/dht_record.h): how many signatures one core signs and
// checks per second (a check is the peer-id hash plus an Ed25519 verification).
static void bench_record_checks() {
  Identity me = Identity::generate();
  NodeId key = NodeId::from_key("bench");
  std::string sub = "@" + me.id().hex();
  std::string pk((const char*)me.public_key().data(), kPublicKeyBytes);
  const int n = 2000;
  std::vector<std::string> values, sigs;
  auto t0 = Clock::now();
  for (int i = 0; i < n; i++) {
    values.push_back(std::string(200, (char)('a' + i % 26)) + std::to_string(i));  // a ServerInfo-sized value
    sigs.push_back(sign_record(me, key, sub, values.back(), 1e9 + i));
  }
  double sign_s = secs_since(t0);
  t0 = Clock::now();
  int ok = 0;
  for (int i = 0; i < n; i++) ok += check_record(key, sub, values[i], 1e9 + i, pk, sigs[i]) == RecordCheck::kOk;
  double check_s = secs_since(t0);
  std::printf("signed records: %d signs %.0f/s, %d/%d checks %.0f/s (%.1f us each), one core\n", n, n / sign_s, ok, n,
              n / check_s, 1e6 * check_s / n);
}

static void bench_dht(int n_nodes, int n_lookups) {
  auto t0 = Clock::now();
  std::vector<std::string> addrs;
  addrs.push_back(spawn([](int fd) { dht_node_process("", fd); }));
  for (int i = 1; i < n_nodes; i++) {
    std::string boot = addrs[(size_t)i % addrs.size() == 0 ? 0 : std::rand() % addrs.size()];
    addrs.push_back(spawn([boot](int fd) { dht_node_process(boot, fd); }));
  }
  std::printf("dht: %d node processes up in %.1f s\n", n_nodes, secs_since(t0));

  // The same swarm, plain values then values under each writer's own "@<id>"
  // subkey (signed by the writer, checked by every holder and reader).
  for (bool owned : {false, true}) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::map<int, std::vector<double>> ms_by_hops;
    std::vector<double> all_ms, msgs, hops, put_ms;
    int found = 0, stored_total = 0;
    std::string prefix = owned ? "bench-owned-" : "bench-key-";
    {
      // Fresh clients (no listener), each joining through a random node, as
      // `engine dht get` does.
      const int kClients = 10;
      for (int c = 0; c < kClients; c++) {
        Rpc rpc(&loop);
        DhtNode node(rpc, bench_dht_opts());
        std::optional<std::string> sub;
        if (owned) sub = "@" + node.id().hex();
        bool ok = false;
        node.bootstrap({addrs[std::rand() % addrs.size()]}, [&](size_t k, const std::string&) { ok = k > 0; });
        if (!run_until(&loop, [&] { return ok; })) std::fprintf(stderr, "client %d: bootstrap failed\n", c);
        int per = n_lookups / kClients;
        for (int i = 0; i < per; i++) {
          std::string key = prefix + std::to_string(c) + "-" + std::to_string(i);
          bool done = false;
          auto p0 = Clock::now();
          node.put(key, sub, std::string(1, '\x2a'), node.now() + 600,
                   [&](int s, int, const LookupStats&) { stored_total += s, done = true; });
          run_until(&loop, [&] { return done; });
          put_ms.push_back(1000 * secs_since(p0));
        }
        for (int i = 0; i < per; i++) {
          // Gets from a different client than the one that stored.
          std::string key = prefix + std::to_string((c + 1) % kClients) + "-" + std::to_string(i);
          bool done = false;
          node.find_nodes(NodeId::random(), [&](const std::vector<Contact>&, const LookupStats&) {});
          node.get(key, [&](const GetResult& r) {
            done = true;
            (void)r;
          });
          run_until(&loop, [&] { return done; });
        }
        // Measured lookups: values stored by clients before this one.
        for (int i = 0; i < per; i++) {
          std::string key = prefix + std::to_string(c > 0 ? c - 1 : 0) + "-" + std::to_string(i);
          bool done = false;
          node.get(key, [&](const GetResult& r) {
            done = true;
            found += r.found;
            ms_by_hops[r.stats.value_hops].push_back(r.stats.ms);
            all_ms.push_back(r.stats.ms);
            msgs.push_back(r.stats.messages);
            hops.push_back(r.stats.hops);
          });
          run_until(&loop, [&] { return done; });
        }
        node.stop();
        rpc.close();
        uv_run(&loop, UV_RUN_DEFAULT);
      }
    }
    uv_loop_close(&loop);
    auto mean = [](const std::vector<double>& v) {
      return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    };
    auto pct = [](std::vector<double> v, double p) {
      if (v.empty()) return 0.0;
      std::sort(v.begin(), v.end());
      return v[std::min(v.size() - 1, (size_t)(p * v.size()))];
    };
    std::printf("dht %d nodes, %zu gets of %s values (k=20, alpha=3): found %d/%zu, stored on %.1f nodes per put\n",
                n_nodes, all_ms.size(), owned ? "signed (owned-subkey)" : "plain", found, all_ms.size(),
                (double)stored_total / std::max<size_t>(1, all_ms.size()));
    std::printf("  messages per lookup: mean %.1f   hops (longest referral chain): mean %.2f max %.0f\n", mean(msgs),
                mean(hops), pct(hops, 1.0));
    std::printf("  get latency: mean %.2f ms  p50 %.2f ms  p99 %.2f ms;  put (lookup + store): mean %.2f ms"
                "  p50 %.2f ms\n",
                mean(all_ms), pct(all_ms, 0.5), pct(all_ms, 0.99), mean(put_ms), pct(put_ms, 0.5));
    for (auto& [h, v] : ms_by_hops)
      std::printf("  value first found at hop %d: %4zu lookups, mean %.2f ms\n", h, v.size(), mean(v));
  }
}

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int nodes = 100, lookups = 200;
  bool skip_dht = false, skip_rpc = false, only_key = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--nodes" && i + 1 < argc) nodes = std::atoi(argv[++i]);
    else if (a == "--lookups" && i + 1 < argc) lookups = std::atoi(argv[++i]);
    else if (a == "--skip-dht") skip_dht = true;
    else if (a == "--skip-rpc") skip_rpc = true;
    else if (a == "--only-key") only_key = true;
    else {
      std::fprintf(stderr, "usage: net_bench [--nodes N] [--lookups N] [--skip-dht] [--skip-rpc] [--only-key]\n");
      return 1;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  std::srand(12345);
  if (!only_key && !skip_rpc) {
    std::string addr = spawn([](int fd) { rpc_server(fd); });
    bench_rpc(addr);
    reap_children();
  }
  bench_swarm_key();
  reap_children();
  if (only_key) return 0;
  bench_record_checks();
  if (!skip_dht) bench_dht(nodes, lookups);
  reap_children();
  return 0;
}
