// engine dht: run a DHT node (a bootstrap node for others), or talk to the
// swarm once: get / put a key, list a node's peers.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>

#include "core/cli.h"
#include "core/error.h"
#include "commands/security_flags.h"
#include "net/dht_node.h"
#include "net/shutdown_signals.h"
#include "web/health_service.h"
#include "web/net_metrics.h"

using namespace engine;
using namespace engine::net;

namespace {

struct Common {
  std::string initial_peers, swarm = "default";
  int rpc_timeout_ms = 3000;
  SecurityFlags security;
  void add_to(ArgParser& p) {
    security.add_to(p);
    p.add("--initial-peers", "ADDR,...", "peers to join through (HOST:PORT, [IPv6]:PORT)", &initial_peers);
    p.add("--swarm", "NAME", "swarm name; peers in other swarms are refused", &swarm);
    p.add("--rpc-timeout", "MS", "deadline of each request", &rpc_timeout_ms);
  }
};

void log_line(const std::string& s) {
  std::time_t t = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", std::localtime(&t));
  std::fprintf(stderr, "[%s] dht: %s\n", ts, s.c_str());
}

// Runs a one-shot client: joins through the initial peers, runs `action`,
// which calls finish(code) when it is done.
int run_client(const Common& c, const std::function<void(Rpc&, DhtNode&, std::function<void(int)>)>& action) {
  auto peers = split_list(c.initial_peers);
  if (peers.empty()) throw Error("--initial-peers is required");
  uv_loop_t loop;
  uv_loop_init(&loop);
  int rc = 1;
  {
    RpcOptions ro;
    ro.swarm = c.swarm;
    c.security.apply(ro);
    Rpc rpc(&loop, ro);
    DhtOptions o;
    o.rpc_timeout_ms = (uint32_t)c.rpc_timeout_ms;
    DhtNode node(rpc, o);
    std::string err;
    auto finish = [&](int code) {
      rc = code;
      node.stop();
      rpc.close();
    };
    node.bootstrap(peers, [&](size_t known, const std::string& e) {
      if (!known) {
        err = e;
        finish(1);
        return;
      }
      action(rpc, node, finish);
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!err.empty()) {
      uv_loop_close(&loop);
      throw Error(err);
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return rc;
}

std::string value_text(const std::string& packed) {
  auto oh = unpack_untrusted(packed.data(), packed.size());
  if (oh.get().type == msgpack::type::STR) return std::string(oh.get().via.str.ptr, oh.get().via.str.size);
  return object_to_text(oh.get());
}

std::string printable(const std::string& s) {
  for (unsigned char ch : s)
    if (ch < 0x20 || ch >= 0x7f) {
      static const char* d = "0123456789abcdef";
      std::string hex = "0x";
      for (unsigned char x : s) hex += d[x >> 4], hex += d[x & 15];
      return hex;
    }
  return s;
}

int cmd_get(int argc, char** argv) {
  Common c;
  std::vector<std::string> pos;
  ArgParser p("dht get", "Look a key up in the DHT and print its value (one SUBKEY=VALUE line per subkey "
                         "for dictionary values). Exits 1 when the key is not found.");
  c.add_to(p);
  p.positional("KEY", "the key", &pos, 1, 1);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    return run_client(c, [&](Rpc&, DhtNode& node, std::function<void(int)> finish) {
      node.get(pos[0], [&, finish](const GetResult& r) {
        log_line("lookup: " + std::to_string(r.stats.messages) + " requests, " + std::to_string(r.stats.hops) +
                 " hops, " + std::to_string((int)r.stats.ms) + " ms");
        if (!r.found) {
          std::fprintf(stderr, "error: key '%s' not found\n", pos[0].c_str());
          finish(1);
          return;
        }
        if (!r.record.is_dict) std::printf("%s\n", value_text(r.record.plain.value).c_str());
        for (auto& [sub, e] : r.record.dict)
          std::printf("%s=%s\n", printable(sub).c_str(), value_text(e.value).c_str());
        std::fflush(stdout);
        finish(0);
      });
    });
  });
}

int cmd_put(int argc, char** argv) {
  Common c;
  std::string subkey;
  double ttl = 600;
  std::vector<std::string> pos;
  ArgParser p("dht put", "Store VALUE (as a string) under KEY on the nodes closest to it.");
  c.add_to(p);
  p.add("--subkey", "S", "store into the dictionary under KEY (\"@<peer id hex>\" is writable only by that peer)",
        &subkey);
  p.add("--ttl", "SECONDS", "time to live", &ttl);
  p.positional("KEY VALUE", "the key and the value", &pos, 2, 2);
  if (!p.parse(argc, argv)) return p.exit_code();
  if (!(ttl > 0 && ttl <= kMaxTtlS)) {
    std::fprintf(stderr, "error: --ttl must be positive and at most %.0f (the DHT's maximum TTL)\n", kMaxTtlS);
    return 1;
  }
  return run_command([&] {
    return run_client(c, [&](Rpc&, DhtNode& node, std::function<void(int)> finish) {
      Buf b;
      Packer pk(b);
      pack_str(pk, pos[1]);
      std::optional<std::string> sub;
      if (p.given("--subkey")) sub = subkey;
      node.put(pos[0], sub, b.s, node.now() + ttl, [finish](int stored, int tried, const LookupStats&) {
        std::printf("stored on %d of %d nodes\n", stored, tried);
        std::fflush(stdout);
        finish(stored > 0 ? 0 : 1);
      });
    });
  });
}

int cmd_peers(int argc, char** argv) {
  Common c;
  ArgParser p("dht peers", "Print the routing table of the first node in --initial-peers.");
  c.add_to(p);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    auto peers = split_list(c.initial_peers);
    if (peers.empty()) throw Error("--initial-peers is required");
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::string err;
    {
      RpcOptions ro;
      ro.swarm = c.swarm;
      c.security.apply(ro);
      Rpc rpc(&loop, ro);
      rpc.call(peers[0], "dht.peers", empty_map(), (uint32_t)c.rpc_timeout_ms, [&](const Reply& r) {
        if (!r.ok()) {
          err = peers[0] + ": " + r.message;
        } else {
          try {
            NodeId id;
            NodeId::from_bytes(as_bin(need_field(*r.result, "id"), "id"), &id);
            auto& nodes = as_array(need_field(*r.result, "nodes"), "nodes");
            std::printf("node %s at %s knows %u peers\n", id.hex().c_str(),
                        std::string(as_str(need_field(*r.result, "address"), "address")).c_str(),
                        nodes.via.array.size);
            for (uint32_t i = 0; i < nodes.via.array.size; i++) {
              auto& n = as_array(nodes.via.array.ptr[i], "node");
              NodeId nid;
              NodeId::from_bytes(as_bin(n.via.array.ptr[0], "id"), &nid);
              std::printf("%s %s last seen %.1fs ago\n", nid.hex().c_str(),
                          std::string(as_str(n.via.array.ptr[1], "addr")).c_str(),
                          (double)as_uint(n.via.array.ptr[2], "age") / 1000.0);
            }
          } catch (const BadMessage& e) {
            err = peers[0] + ": bad reply: " + e.what();
          }
        }
        rpc.close();
      });
      uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (!err.empty()) throw Error(err);
    return 0;
  });
}

int cmd_node(int argc, char** argv) {
  Common c;
  std::string listen = "0.0.0.0:0", http;
  double refresh_s = 60, republish_s = 300, crawl_s = 3;
  int k = 20, max_conns_per_ip = 128;
  ArgParser p("dht", "Run a DHT node; it prints the address others pass as --initial-peers. Also:\n"
                     "  engine dht get KEY, engine dht put KEY VALUE, engine dht peers (see their --help).");
  p.add("--listen", "ADDR", "address to listen on (port 0: any free port)", &listen);
  c.add_to(p);
  p.add("--refresh-interval", "SECONDS", "bucket refresh period", &refresh_s);
  p.add("--republish-interval", "SECONDS", "republish period of own values and held replicas", &republish_s);
  p.add("--k", "N", "bucket size and replication factor", &k);
  p.add("--max-conns-per-ip", "N", "incoming connections accepted from one IP address", &max_conns_per_ip);
  p.add("--http", "ADDR", "serve the swarm health page, /api/v1/state and /metrics here (HOST:PORT, port 0: any)",
        &http);
  p.add("--crawl-interval", "SECONDS", "how often the health page's watcher re-reads the swarm", &crawl_s);
  if (!p.parse(argc, argv)) return p.exit_code();
  const auto started = std::chrono::steady_clock::now();
  return run_command([&] {
    if (refresh_s <= 0 || republish_s <= 0 || k < 1 || max_conns_per_ip < 1 || crawl_s <= 0)
      throw Error("intervals (--crawl-interval too), --k and --max-conns-per-ip must be positive");
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::string err;
    {
      RpcOptions ro;
      ro.swarm = c.swarm;
      c.security.apply(ro);
      ro.limits.max_conns_per_ip = max_conns_per_ip;
      Rpc rpc(&loop, ro);
      std::string addr = rpc.listen(listen);
      DhtOptions o;
      o.k = (size_t)k;
      o.rpc_timeout_ms = (uint32_t)c.rpc_timeout_ms;
      o.refresh_interval_ms = (uint32_t)(refresh_s * 1000);
      o.republish_interval_ms = (uint32_t)(republish_s * 1000);
      o.log = log_line;
      DhtNode node(rpc, o);
      rpc.on_violation = [](const std::string& who, const std::string& why) { log_line("cut off " + who + ": " + why); };
      std::printf("dht: node %s listening on %s\n", node.id().hex().c_str(), addr.c_str());
      std::string shown = addr;
      if (Address::parse(addr).is_unspecified()) {
        Address a = Address::parse(addr);
        shown = (a.family() == AF_INET6 ? "[::1]:" : "127.0.0.1:") + std::to_string(a.port());
        std::printf("dht: (listening on all interfaces; others use this host's address with port %d)\n", a.port());
      }
      std::printf("dht: others join with --initial-peers %s\n", shown.c_str());
      // The health page's watcher joins the swarm through this node, as any peer would.
      std::unique_ptr<web::HealthService> health;
      std::unique_ptr<web::LoopTimer> metrics_timer;
      if (!http.empty()) {
        web::WatcherOptions w;
        w.peers = {shown};
        w.swarm = c.swarm;
        w.swarm_key = c.security.swarm_key();
        w.interval_s = crawl_s;
        w.role = "dht";
        w.address = shown;
        health = std::make_unique<web::HealthService>(http, w);
        health->start();
        std::printf("dht: health page at %s\n", health->url().c_str());
        log_line("http: listening on " + health->address());
        metrics_timer = std::make_unique<web::LoopTimer>(&loop, 1000, [&] {
          double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
          web::export_net_metrics(health->metrics(), rpc, &node, up);
        });
      }
      std::fflush(stdout);

      auto stop = [&](const char* why) {
        log_line(why);
        node.stop();
        rpc.close();
      };
      net::ShutdownSignals sigs(&loop, [&](int signum) {
        stop(signum == SIGINT ? "interrupted, shutting down" : "terminated, shutting down");
        sigs.close();
      });
      auto peers = split_list(c.initial_peers);
      node.bootstrap(peers, [&](size_t known, const std::string& e) {
        if (!peers.empty() && !known) {
          err = e;
          stop("bootstrap failed");
          sigs.close();
          return;
        }
        if (!peers.empty()) log_line("joined the swarm; " + std::to_string(known) + " peers known");
        node.start_maintenance();
      });
      uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (!err.empty()) throw Error(err);
    log_line("stopped");
    return 0;
  });
}

int cmd_dht(int argc, char** argv) {
  if (argc >= 2) {
    std::string sub = argv[1];
    if (sub == "get") return cmd_get(argc - 1, argv + 1);
    if (sub == "put") return cmd_put(argc - 1, argv + 1);
    if (sub == "peers") return cmd_peers(argc - 1, argv + 1);
  }
  return cmd_node(argc, argv);
}

}  // namespace

ENGINE_COMMAND("dht", "run a DHT node / get, put, list peers", cmd_dht);
