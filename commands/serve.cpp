// engine serve: hold a span of a model's blocks and serve it to the swarm.
// Joins the DHT, picks its blocks (--blocks, or Petals' rule over what the
// others announce), measures its throughput, announces itself under
// "<model>.<block>" (joining -> online -> offline on shutdown), serves
// inference sessions and forward passes (net/block_server.h), and, when it
// chose its own span, moves when that would balance the swarm better.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <random>

#include "commands/security_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/gguf.h"
#include "net/block_server.h"
#include "net/dht_node.h"
#include "net/shutdown_signals.h"
#include "net/server_info.h"
#include "net/span_choice.h"
#include "net/swarm_index.h"
#include "net/swarm_runner.h"
#include "web/health_service.h"
#include "web/net_metrics.h"

using namespace engine;
using namespace engine::net;

namespace {

void log_line(const std::string& s) {
  std::time_t t = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", std::localtime(&t));
  std::fprintf(stderr, "[%s] serve: %s\n", ts, s.c_str());
}

struct Throughput {
  double inference_rps = 0, forward_rps = 0;
};

// Times one-token steps and a small batch on the loaded span (per block, so
// spans of different lengths compare).
Throughput measure(const LlamaModel& m, ThreadPool& pool, DType kv_type) {
  const auto& hp = m.hparams();
  int64_t nb = std::max<int64_t>(1, m.last_block() - m.first_block());
  const int64_t batch = 16;
  KVCache cache(hp, m.first_block(), m.last_block(), batch + 8, kv_type);
  std::vector<float> h((size_t)(batch * hp.n_embd), 0.01f);
  auto now = [] { return std::chrono::steady_clock::now(); };
  m.forward(cache, h.data(), 1, pool);  // warm-up: page in the weights
  auto t0 = now();
  int steps = 0;
  while (steps < 5 && std::chrono::duration<double>(now() - t0).count() < 1.0) {
    m.forward(cache, h.data(), 1, pool);
    steps++;
  }
  double step_s = std::chrono::duration<double>(now() - t0).count() / steps;
  cache.clear();
  auto t1 = now();
  m.forward(cache, h.data(), batch, pool);
  double fwd_s = std::chrono::duration<double>(now() - t1).count();
  return {(double)nb / std::max(step_s, 1e-9), (double)(batch * nb) / std::max(fwd_s, 1e-9)};
}

bool parse_span(const std::string& s, int64_t* a, int64_t* b) {
  auto c = s.find(':');
  if (c == std::string::npos) return false;
  try {
    size_t p1, p2;
    *a = std::stoll(s.substr(0, c), &p1);
    *b = std::stoll(s.substr(c + 1), &p2);
    return p1 == c && p2 == s.size() - c - 1;
  } catch (...) {
    return false;
  }
}

struct Server {
  uv_loop_t* loop;
  Rpc& rpc;
  DhtNode& dht;
  ThreadPool& pool;
  std::shared_ptr<const GGUFFile> file;
  LlamaHParams hp;
  std::string name, address, public_name, throughput_arg;
  DType kv_type;
  double ttl_s, bandwidth_mbps, balance_quality;
  int64_t num_blocks;
  bool auto_span;
  std::function<void(std::shared_ptr<LlamaModel>)> server_ready;  // creates `server` for the first span
  std::unique_ptr<BlockServer> server;
  ServerInfo info;
  ServerMap last_seen;
  std::mt19937_64 rng{std::random_device{}()};
  bool announce_soon = false;
  bool moving = false;
  double last_exp = 0;

  void set_throughput_measured(const LlamaModel& m) {
    Throughput t = measure(m, pool, kv_type);
    info.inference_rps = t.inference_rps;
    info.forward_rps = t.forward_rps;
    // The network rate is estimated from the configured bandwidth and f16 hidden states, not measured.
    info.network_rps = bandwidth_mbps * 1e6 / 8 / (double)(hp.n_embd * 2);
    info.throughput = std::min(info.forward_rps, info.network_rps);
  }
  void set_throughput_fixed() {
    double v = std::stod(throughput_arg);
    info.inference_rps = info.forward_rps = info.throughput = v;
    info.network_rps = bandwidth_mbps * 1e6 / 8 / (double)(hp.n_embd * 2);
  }

  void announce(ServerState state, std::function<void()> done = nullptr) {
    info.state = state;
    info.cache_tokens_left = server ? server->cache_tokens_left() : 0;
    std::string value = encode_server_info(info);
    // Strictly newer than the last announcement: the DHT keeps the entry with the latest
    // expiration, and joining -> online can happen within one millisecond.
    double exp = std::max(dht.now() + ttl_s, last_exp + 0.001);
    last_exp = exp;
    auto pending = std::make_shared<int>((int)(info.last - info.first) + 1);
    auto fin = [pending, done] {
      if (--*pending == 0 && done) done();
    };
    for (int64_t b = info.first; b < info.last; b++)
      dht.put(block_key(name, b), peer_subkey(dht.id().hex()), value, exp, [fin](int, int, const LookupStats&) { fin(); });
    // The swarm's index of models (net/swarm_index.h), so watchers can find this one.
    publish_model_entry(dht, ModelEntry{name, hp.n_layer, hp.n_embd}, exp, [fin](bool) { fin(); });
  }

  std::shared_ptr<LlamaModel> load_span(int64_t a, int64_t b) {
    LlamaLoadOptions lo;
    lo.first_block = a, lo.last_block = b, lo.embeddings = false, lo.head = false;
    return LlamaModel::load(file, lo);
  }

  // Starts serving [a, b): joining, load, measure, online.
  void take_span(int64_t a, int64_t b) {
    info.first = a, info.last = b;
    if (throughput_arg != "auto") set_throughput_fixed();  // so a joining entry already weighs in span choice
    announce(ServerState::kJoining);
    auto m = load_span(a, b);
    if (throughput_arg == "auto") set_throughput_measured(*m);
    if (server) server->set_model(m);
    else server_ready(m);
    log_line("blocks " + std::to_string(a) + ":" + std::to_string(b) + ", " +
             std::to_string(info.inference_rps).substr(0, 8) + " steps/s and " + std::to_string(info.forward_rps).substr(0, 8) +
             " tokens/s per block");
    announce(ServerState::kOnline, [this, a, b] {
      std::printf("serve: online, blocks %lld:%lld\n", (long long)a, (long long)b);
      std::fflush(stdout);
    });
  }

  // Periodic: refresh our entries, measure pings to the servers of our next block, maybe move.
  void tick(bool rebalance) {
    if (moving || !server) return;
    fetch_servers(dht, name, hp.n_layer, [this, rebalance](ServerMap m) {
      last_seen = std::move(m);
      // Pings to the servers that hold the block after our span (what a chain through us goes to next).
      for (auto& [id, s] : last_seen) {
        if (id == dht.id().hex() || s.state != ServerState::kOnline || !(s.first <= info.last && info.last < s.last)) continue;
        auto t0 = std::chrono::steady_clock::now();
        std::string sid = id;
        rpc.call(s.address, "dht.ping", empty_map(), 2000, [this, sid, t0](const Reply& r) {
          if (r.ok()) info.next_pings[sid] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          else info.next_pings.erase(sid);
        });
      }
      if (info.next_pings.size() > 32) info.next_pings.clear();  // bounded: stale entries go
      if (rebalance && auto_span && last_seen.count(dht.id().hex())) {
        double q = 1;
        if (should_move(last_seen, hp.n_layer, dht.id().hex(), balance_quality, rng, &q)) {
          int64_t len = info.last - info.first;
          int64_t start = choose_span_start(last_seen, hp.n_layer, len, dht.id().hex());
          if (start != info.first) {
            log_line("rebalancing (balance quality " + std::to_string(q).substr(0, 5) + "): moving from " +
                     std::to_string(info.first) + ":" + std::to_string(info.last) + " to " + std::to_string(start) + ":" +
                     std::to_string(start + len));
            moving = true;
            announce(ServerState::kOffline, [this, start, len] {
              take_span(start, start + len);
              moving = false;
            });
            return;
          }
        }
      }
      announce(ServerState::kOnline);
    });
  }
};

int cmd_serve(int argc, char** argv) {
  std::string model_path, initial_peers, blocks, listen = "127.0.0.1:0", public_name, throughput = "auto";
  std::string swarm = "default", model_name, kv_type_name = "f16", announce_addr, http;
  int64_t num_blocks = 0, cache_tokens = 8192, max_length = 0;
  int max_sessions = 64, threads = 0, max_sessions_per_peer = 8;
  double announce_interval = 20, rebalance_interval = 60, balance_quality = 0.75, bandwidth = 100, start_delay = 1.0;
  double step_timeout = 120, crawl_s = 3;
  // What one hostile peer may cost (docs/protocol.md, "What an attacker can cost a server").
  Limits limits;
  int max_sessions_per_ip = 16;
  int64_t max_cache_per_peer = 0, max_frame_kib = (int64_t)(limits.max_frame >> 10);
  int64_t pending_mib_per_ip = (int64_t)(limits.max_pending_per_ip >> 20), pending_mib = (int64_t)(limits.max_pending_total >> 20);
  double orphan_timeout = 30, frame_timeout = limits.frame_timeout_ms / 1000.0;
  double backoff_s = limits.backoff_base_ms / 1000.0, backoff_max_s = limits.backoff_max_ms / 1000.0;
  int step_delay_ms = 0;
  std::string byzantine;
  bool verbose = false;
  SecurityFlags security;
  ArgParser p("serve", "Serve a span of a model's transformer blocks to the swarm (prints its address; Ctrl-C "
                       "announces it offline and stops).");
  p.add("-m,--model", "FILE", "model GGUF (only the served blocks are read)", &model_path, true);
  p.add("--initial-peers", "ADDR,...", "DHT peers to join through (none: start a new swarm)", &initial_peers);
  p.add("--blocks", "A:B", "serve blocks [A, B) (default: choose the weakest span)", &blocks);
  p.add("--num-blocks", "N", "how many blocks to serve when choosing (default: all)", &num_blocks);
  p.add("--listen", "ADDR", "address to listen on (port 0: any free port)", &listen);
  p.add("--announce", "ADDR", "address clients should use (default: the listen address)", &announce_addr);
  p.add("--public-name", "NAME", "a name shown to others", &public_name);
  p.add("--model-name", "NAME", "model name in the DHT (default: the file name without .gguf)", &model_name);
  p.add("--swarm", "NAME", "swarm name; peers in other swarms are refused", &swarm);
  security.add_to(p);
  p.add("--cache-tokens", "N", "KV cache positions (of the whole span) for all sessions together", &cache_tokens);
  p.add("--max-sessions", "N", "open inference sessions at most", &max_sessions);
  p.add("--max-sessions-per-peer", "N", "open sessions one client may hold", &max_sessions_per_peer);
  p.add("--max-sessions-per-ip", "N", "open sessions all clients at one IP address may hold", &max_sessions_per_ip);
  p.add("--max-cache-per-peer", "N",
        "KV cache positions one client, and one IP address, may hold (default: all of --cache-tokens)",
        &max_cache_per_peer);
  p.add("--orphan-timeout", "SECONDS", "sessions of a client with no connection to us this long are closed",
        &orphan_timeout);
  p.add("--max-conns", "N", "incoming and outgoing connections at most", &limits.max_conns);
  p.add("--max-conns-per-ip", "N", "incoming connections from one IP address", &limits.max_conns_per_ip);
  p.add("--max-frame-kib", "N", "largest frame body accepted, KiB (bounds each connection's read buffer)",
        &max_frame_kib);
  p.add("--max-pending-per-ip", "MIB", "bytes of unfinished incoming frames buffered for one IP address",
        &pending_mib_per_ip);
  p.add("--max-pending", "MIB", "bytes of unfinished incoming frames buffered for everyone together", &pending_mib);
  p.add("--frame-timeout", "SECONDS", "a peer that starts a frame and does not finish it this soon is cut off",
        &frame_timeout);
  p.add("--backoff", "SECONDS", "a peer cut off for a violation is refused this long, doubling per repeat (0: off)",
        &backoff_s);
  p.add("--backoff-max", "SECONDS", "longest refusal of a repeat offender", &backoff_max_s);
  p.add("--max-length", "N", "longest session (default: the model's context)", &max_length);
  p.add("--throughput", "auto|N", "announced throughput: measured, or N tokens/s per block", &throughput);
  p.add("--bandwidth-mbps", "X", "network rate assumed for the announced network throughput", &bandwidth);
  p.add("--kv-type", "T", "KV cache type: f16 or f32", &kv_type_name);
  p.add("--announce-interval", "SECONDS", "how often entries are refreshed (they live 3x this)", &announce_interval);
  p.add("--rebalance-interval", "SECONDS", "how often a self-chosen span is re-checked (0: never)", &rebalance_interval);
  p.add("--balance-quality", "Q", "move when the swarm's min throughput would rise by 1/Q", &balance_quality);
  p.add("--start-delay", "SECONDS", "longest random wait before choosing a span", &start_delay);
  p.add("--step-timeout", "SECONDS", "sessions idle this long are closed", &step_timeout);
  p.add("-t,--threads", "N", "compute threads (default: all cores)", &threads);
  p.add("--step-delay", "MS", "tests and demos: pretend to be slow, sleeping this long per step", &step_delay_ms);
  p.add("--byzantine-serve", "MODE", "TESTS ONLY: return wrong hidden states (noise:S[@N]: add S x RMS Gaussian "
        "noise, sign[@N]: flip signs; after N honest steps) so clients' spot checks can be tested", &byzantine);
  p.flag("--verbose", "log every inference step", &verbose);
  p.add("--http", "ADDR", "serve the swarm health page, /api/v1/state and /metrics here (HOST:PORT, port 0: any)",
        &http);
  p.add("--crawl-interval", "SECONDS", "how often the health page's watcher re-reads the swarm", &crawl_s);
  if (!p.parse(argc, argv)) return p.exit_code();
  const auto started = std::chrono::steady_clock::now();
  return run_command([&] {
    if (crawl_s <= 0) throw Error("--crawl-interval must be positive");
    DType kv_type = kv_type_name == "f32" ? DType::F32 : DType::F16;
    if (kv_type_name != "f16" && kv_type_name != "f32") throw Error("--kv-type is f16 or f32");
    if (throughput != "auto") {
      try {
        if (std::stod(throughput) <= 0) throw 0;
      } catch (...) {
        throw Error("--throughput is 'auto' or a positive number");
      }
    }
    if (cache_tokens < 0 || max_sessions < 1 || max_sessions_per_peer < 1 || announce_interval <= 0 || step_timeout <= 0)
      throw Error("--cache-tokens must be >= 0; --max-sessions, intervals and timeouts positive");
    if (announce_interval * 3 > net::kMaxTtlS)
      throw Error("--announce-interval must be at most " + std::to_string((int)(net::kMaxTtlS / 3)) +
                  " (announcements live 3x it, and DHT records at most a day)");
    if (max_sessions_per_ip < 1 || max_cache_per_peer < 0 || orphan_timeout <= 0 || limits.max_conns < 1 ||
        limits.max_conns_per_ip < 1 || frame_timeout <= 0 || backoff_s < 0 || backoff_max_s < backoff_s ||
        frame_timeout > 86400 || orphan_timeout > 86400)  // ms of a day still fit the uint32 fields
      throw Error("--max-sessions-per-ip, --max-conns(-per-ip), --orphan-timeout and --frame-timeout must be positive "
                  "(timeouts at most a day); --max-cache-per-peer and --backoff >= 0; --backoff-max >= --backoff");
    // A frame must hold at least a step of one position; 64 KiB is far below any use.
    if (max_frame_kib < 64 || max_frame_kib > (1 << 20)) throw Error("--max-frame-kib must be in 64..1048576");
    limits.max_frame = (size_t)max_frame_kib << 10;
    if (pending_mib_per_ip < 1 || pending_mib < pending_mib_per_ip)
      throw Error("--max-pending-per-ip must be >= 1 and --max-pending >= --max-pending-per-ip");
    limits.max_pending_per_ip = (size_t)pending_mib_per_ip << 20;
    limits.max_pending_total = (size_t)pending_mib << 20;
    limits.frame_timeout_ms = (uint32_t)(frame_timeout * 1000);
    limits.backoff_base_ms = (uint64_t)(backoff_s * 1000);
    limits.backoff_max_ms = (uint64_t)(backoff_max_s * 1000);
    std::shared_ptr<const GGUFFile> file = GGUFFile::open(model_path);
    LlamaHParams hp = LlamaHParams::from_gguf(*file);
    if (model_name.empty()) model_name = model_dht_name(model_path);
    int64_t fixed_a = -1, fixed_b = -1;
    if (!blocks.empty()) {
      if (!parse_span(blocks, &fixed_a, &fixed_b) || fixed_a < 0 || fixed_b <= fixed_a || fixed_b > hp.n_layer)
        throw Error("--blocks " + blocks + ": want A:B with 0 <= A < B <= " + std::to_string(hp.n_layer));
    }
    if (num_blocks <= 0 || num_blocks > hp.n_layer) num_blocks = hp.n_layer;
    ByzantineMode byz = byzantine.empty() ? ByzantineMode{} : parse_byzantine_mode(byzantine);
    if (!byz.honest()) std::fprintf(stderr, "serve: WARNING: --byzantine-serve: this server %s (a test)\n",
                                    byz.describe().c_str());

    uv_loop_t loop;
    uv_loop_init(&loop);
    {
      ThreadPool pool(threads);
      RpcOptions ro;
      ro.swarm = swarm;
      ro.limits = limits;
      security.apply(ro);
      Rpc rpc(&loop, ro);
      // Peers cut off, logged at most once a second so a flood cannot fill the disk.
      uint64_t last_cut_ms = 0, cut_quiet = 0;
      rpc.on_violation = [&](const std::string& who, const std::string& why) {
        uint64_t now = uv_now(&loop);
        if (last_cut_ms && now - last_cut_ms < 1000) {
          cut_quiet++;
          return;
        }
        last_cut_ms = now;
        log_line("cut off " + who + ": " + why +
                 (cut_quiet ? " (and " + std::to_string(cut_quiet) + " more not logged)" : std::string()));
        cut_quiet = 0;
      };
      std::string addr = rpc.listen(listen);
      DhtOptions dopts;
      dopts.log = [](const std::string& s) { log_line("dht: " + s); };
      DhtNode dht(rpc, dopts);
      std::string shown = addr;
      if (Address::parse(addr).is_unspecified()) shown = "127.0.0.1:" + std::to_string(Address::parse(addr).port());
      if (!announce_addr.empty()) shown = announce_addr;
      std::printf("serve: node %s listening on %s\n", rpc.id().hex().c_str(), shown.c_str());
      std::printf("serve: others join with --initial-peers %s\n", shown.c_str());
      std::fflush(stdout);

      Server S{&loop, rpc, dht, pool, file, hp, model_name, shown, public_name, throughput, kv_type,
               announce_interval * 3, bandwidth, balance_quality, num_blocks, fixed_a < 0, {}, {}, {}, {}};
      S.info.model = model_name;
      S.info.address = shown;
      S.info.public_name = public_name;
      S.info.version = "engine/1";
      BlockServerOptions bo;
      bo.model_name = model_name;
      bo.cache_tokens = cache_tokens;
      bo.max_sessions = max_sessions;
      bo.max_sessions_per_peer = max_sessions_per_peer;
      bo.max_sessions_per_ip = max_sessions_per_ip;
      bo.max_cache_tokens_per_peer = max_cache_per_peer;
      bo.orphan_timeout_ms = (uint32_t)(orphan_timeout * 1000);
      bo.max_length = max_length;
      bo.kv_type = kv_type;
      bo.step_timeout_ms = (uint32_t)(step_timeout * 1000);
      bo.log = [](const std::string& s) { log_line(s); };
      bo.step_delay_ms = (uint32_t)std::max(0, step_delay_ms);
      bo.log_steps = verbose;
      bo.byzantine = byz;
      S.server_ready = [&](std::shared_ptr<LlamaModel> m) {
        S.server = std::make_unique<BlockServer>(rpc, m, pool, bo);
        S.server->on_cache_change = [&S] { S.announce_soon = true; };
      };

      // The health page's watcher joins the swarm through this server's own node.
      std::unique_ptr<web::HealthService> health;
      std::unique_ptr<web::LoopTimer> metrics_timer;
      if (!http.empty()) {
        web::WatcherOptions w;
        w.peers = {shown};
        w.swarm = swarm;
        w.swarm_key = security.swarm_key();
        w.interval_s = crawl_s;
        w.role = "serve";
        w.address = shown;
        health = std::make_unique<web::HealthService>(http, w);
        web::declare_block_server_metrics(health->metrics());
        health->start();
        std::printf("serve: health page at %s\n", health->url().c_str());
        std::fflush(stdout);
        log_line("http: listening on " + health->address());
        metrics_timer = std::make_unique<web::LoopTimer>(&loop, 1000, [&] {
          double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
          web::export_net_metrics(health->metrics(), rpc, &dht, up);
          web::export_block_server_metrics(health->metrics(), S.server.get());
        });
      }

      // Timers: the announce/rebalance tick and a fast one that publishes cache changes.
      uv_timer_t tick, fast;
      uv_timer_init(&loop, &tick);
      uv_timer_init(&loop, &fast);
      struct TickCtx {
        Server* s;
        uint64_t next_rebalance_ms;
        double rebalance_s;
      } tctx{&S, 0, rebalance_interval};
      tick.data = &tctx;
      fast.data = &S;
      bool stopping = false;
      auto start_timers = [&] {
        tctx.next_rebalance_ms = uv_now(&loop) + (uint64_t)(rebalance_interval * 1000);
        uv_timer_start(&tick, [](uv_timer_t* t) {
          auto* c = (TickCtx*)t->data;
          bool reb = c->rebalance_s > 0 && uv_now(t->loop) >= c->next_rebalance_ms;
          // Jittered, so servers that see the same swarm do not all move at the same moment.
          double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(c->s->rng);
          if (reb) c->next_rebalance_ms = uv_now(t->loop) + (uint64_t)(c->rebalance_s * 1000 * jitter);
          c->s->tick(reb);
        }, (uint64_t)(announce_interval * 1000), (uint64_t)(announce_interval * 1000));
        uv_timer_start(&fast, [](uv_timer_t* t) {
          auto* s = (Server*)t->data;
          if (s->announce_soon && !s->moving && s->server) {
            s->announce_soon = false;
            s->announce(ServerState::kOnline);
          }
        }, 1000, 1000);
      };

      auto begin = [&] {
        if (fixed_a >= 0) {
          S.take_span(fixed_a, fixed_b);
          start_timers();
          return;
        }
        // A short random delay, so servers that start together do not all pick the same blocks.
        uint64_t delay = (uint64_t)(std::uniform_real_distribution<double>(0, std::max(0.0, start_delay))(S.rng) * 1000);
        static uv_timer_t wait;
        uv_timer_init(&loop, &wait);
        wait.data = &S;
        static std::function<void()> after;
        after = [&] {
          fetch_servers(dht, model_name, hp.n_layer, [&](ServerMap m) {
            if (stopping) return;
            int64_t start = choose_span_start(m, hp.n_layer, num_blocks, dht.id().hex());
            S.take_span(start, start + num_blocks);
            start_timers();
          });
        };
        uv_timer_start(&wait, [](uv_timer_t* t) {
          uv_close((uv_handle_t*)t, nullptr);
          after();
        }, delay, 0);
      };

      auto shutdown = [&](const char* why) {
        if (stopping) return;
        stopping = true;
        log_line(why);
        uv_timer_stop(&tick);
        uv_timer_stop(&fast);
        uv_close((uv_handle_t*)&tick, nullptr);
        uv_close((uv_handle_t*)&fast, nullptr);
        auto finish = [&] {
          if (S.server) S.server->stop();
          dht.stop();
          rpc.close();
        };
        if (!S.server) return finish();
        // Announce offline, then stop; bounded so an unreachable DHT cannot hold us up.
        static uv_timer_t guard;
        static std::function<void()> fin;
        static bool finished;
        finished = false;
        fin = [finish] {
          if (finished) return;
          finished = true;
          finish();
        };
        uv_timer_init(&loop, &guard);
        uv_timer_start(&guard, [](uv_timer_t* t) {
          uv_close((uv_handle_t*)t, nullptr);
          fin();
        }, 2000, 0);
        S.announce(ServerState::kOffline, [] {
          uv_timer_stop(&guard);
          uv_close((uv_handle_t*)&guard, nullptr);
          fin();
        });
      };

      net::ShutdownSignals sigs(&loop, [&](int signum) {
        shutdown(signum == SIGINT ? "interrupted, announcing offline" : "terminated, announcing offline");
        sigs.close();
      });

      std::string err;
      auto peers = split_list(initial_peers);
      dht.bootstrap(peers, [&](size_t known, const std::string& e) {
        if (!peers.empty() && !known) {
          err = "could not join the swarm: " + e;
          shutdown("bootstrap failed");
          sigs.close();
          return;
        }
        dht.start_maintenance();
        try {
          begin();
        } catch (const std::exception& ex) {
          err = ex.what();
          shutdown("failed to start");
          sigs.close();
        }
      });
      uv_run(&loop, UV_RUN_DEFAULT);
      if (S.server) {
        auto st = S.server->stats();
        log_line("served " + std::to_string(st.opened) + " sessions, " + std::to_string(st.steps) + " steps, " +
                 std::to_string(st.forwards) + " forwards, " + std::to_string(st.errors) + " errors");
      }
      S.server.reset();
      uv_run(&loop, UV_RUN_DEFAULT);
      if (!err.empty()) {
        uv_loop_close(&loop);
        throw Error(err);
      }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    log_line("stopped");
    return 0;
  });
}

}  // namespace

ENGINE_COMMAND("serve", "serve a span of a model's blocks to the swarm", cmd_serve);
