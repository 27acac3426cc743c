#include "net/server_info.h"

#include <memory>

namespace engine::net {

const char* server_state_name(ServerState s) {
  switch (s) {
    case ServerState::kOffline: return "offline";
    case ServerState::kJoining: return "joining";
    case ServerState::kOnline: return "online";
  }
  return "?";
}

std::string block_key(const std::string& model, int64_t block) { return model + "." + std::to_string(block); }
std::string peer_subkey(const std::string& id_hex) { return "@" + id_hex; }

std::string encode_server_info(const ServerInfo& s) {
  Buf b;
  Packer pk(b);
  pk.pack_map(14);
  pack_str(pk, "state"), pk.pack_int((int)s.state);
  pack_str(pk, "model"), pack_str(pk, s.model);
  pack_str(pk, "first"), pk.pack_int64(s.first);
  pack_str(pk, "last"), pk.pack_int64(s.last);
  pack_str(pk, "inference_rps"), pk.pack_double(s.inference_rps);
  pack_str(pk, "forward_rps"), pk.pack_double(s.forward_rps);
  pack_str(pk, "network_rps"), pk.pack_double(s.network_rps);
  pack_str(pk, "throughput"), pk.pack_double(s.throughput);
  pack_str(pk, "cache_tokens_left"), pk.pack_int64(s.cache_tokens_left);
  pack_str(pk, "version"), pack_str(pk, s.version);
  pack_str(pk, "address"), pack_str(pk, s.address);
  pack_str(pk, "public_name"), pack_str(pk, s.public_name);
  pack_str(pk, "next_pings");
  pk.pack_map((uint32_t)s.next_pings.size());
  for (auto& [id, rtt] : s.next_pings) pack_str(pk, id), pk.pack_double(rtt);
  pack_str(pk, "adapters");
  pk.pack_array((uint32_t)s.adapters.size());
  for (auto& a : s.adapters) pack_str(pk, a);
  return b.s;
}

ServerInfo decode_server_info(const msgpack::object& o) {
  as_map(o, "server info");
  ServerInfo s;
  int64_t st = as_int(need_field(o, "state"), "state");
  if (st < 0 || st > 2) throw BadMessage("server info: unknown state " + std::to_string(st));
  s.state = (ServerState)st;
  s.model = as_str(need_field(o, "model"), "model");
  s.first = as_int(need_field(o, "first"), "first");
  s.last = as_int(need_field(o, "last"), "last");
  if (s.first < 0 || s.last <= s.first || s.last > (1 << 20)) throw BadMessage("server info: bad span");
  s.inference_rps = as_double(need_field(o, "inference_rps"), "inference_rps");
  s.forward_rps = as_double(need_field(o, "forward_rps"), "forward_rps");
  s.network_rps = as_double(need_field(o, "network_rps"), "network_rps");
  s.throughput = as_double(need_field(o, "throughput"), "throughput");
  if (!(s.inference_rps >= 0 && s.forward_rps >= 0 && s.network_rps >= 0 && s.throughput >= 0))
    throw BadMessage("server info: negative or NaN throughput");
  s.cache_tokens_left = as_int(need_field(o, "cache_tokens_left"), "cache_tokens_left");
  s.address = as_str(need_field(o, "address"), "address");
  if (auto* v = find_field(o, "version")) s.version = as_str(*v, "version");
  if (auto* v = find_field(o, "public_name")) s.public_name = as_str(*v, "public_name");
  if (auto* v = find_field(o, "next_pings")) {
    auto& m = as_map(*v, "next_pings");
    for (uint32_t i = 0; i < m.via.map.size; i++)
      s.next_pings[std::string(as_str(m.via.map.ptr[i].key, "ping id"))] =
          as_double(m.via.map.ptr[i].val, "ping");
  }
  if (auto* v = find_field(o, "adapters")) {
    auto& a = as_array(*v, "adapters");
    for (uint32_t i = 0; i < a.via.array.size; i++) s.adapters.emplace_back(as_str(a.via.array.ptr[i], "adapter"));
  }
  return s;
}

void fetch_servers(DhtNode& dht, const std::string& model, int64_t n_blocks, std::function<void(ServerMap)> done) {
  struct State {
    int64_t pending;
    ServerMap servers;
    std::map<std::string, double> exp;  // id -> expiration of the entry kept
    std::function<void(ServerMap)> done;
  };
  auto st = std::make_shared<State>();
  st->pending = n_blocks;
  st->done = std::move(done);
  if (n_blocks <= 0) {
    st->done({});
    return;
  }
  double now = dht.now();
  for (int64_t b = 0; b < n_blocks; b++) {
    dht.get(block_key(model, b), [st, model, now](const GetResult& r) {
      if (r.found && r.record.is_dict) {
        for (auto& [sub, e] : r.record.dict) {
          if (e.expiration < now || sub.size() != 41 || sub[0] != '@') continue;
          try {
            auto oh = unpack_untrusted(e.value.data(), e.value.size());
            ServerInfo s = decode_server_info(oh.get());
            if (s.model != model) continue;
            s.id = sub.substr(1);
            auto it = st->exp.find(s.id);
            if (it != st->exp.end() && it->second >= e.expiration) continue;  // keep the newest announcement
            st->exp[s.id] = e.expiration;
            st->servers[s.id] = std::move(s);
          } catch (const BadMessage&) {
            // A malformed entry from someone else: ignore it, keep the rest.
          }
        }
      }
      if (--st->pending == 0) st->done(std::move(st->servers));
    });
  }
}

std::vector<int> block_coverage(const ServerMap& servers, int64_t n_blocks, ServerState min_state) {
  std::vector<int> cov((size_t)std::max<int64_t>(n_blocks, 0), 0);
  for (auto& [id, s] : servers) {
    if ((int)s.state < (int)min_state) continue;
    for (int64_t b = std::max<int64_t>(0, s.first); b < std::min(s.last, n_blocks); b++) cov[(size_t)b]++;
  }
  return cov;
}

}  // namespace engine::net
