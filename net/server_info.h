// What a block server announces in the DHT (after Petals' ServerInfo): under
// the key "<model>.<block>" for every block it serves, subkey "@<its id hex>"
// (so only it can write its entry), a ServerInfo record. Clients read these
// records to route; servers read them to choose and rebalance their spans.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "net/dht_node.h"
#include "net/msg.h"

namespace engine::net {

enum class ServerState : int { kOffline = 0, kJoining = 1, kOnline = 2 };
const char* server_state_name(ServerState s);

struct ServerInfo {
  std::string id;  // 40 hex digits (the peer id; taken from the subkey on decode)
  ServerState state = ServerState::kJoining;
  std::string model;
  int64_t first = 0, last = 0;     // blocks [first, last)
  double inference_rps = 0;        // one-token steps per second, per block
  double forward_rps = 0;          // tokens per second in batches, per block
  double network_rps = 0;          // tokens per second the link carries (estimated)
  double throughput = 0;           // min(forward, network): what span choice balances
  int64_t cache_tokens_left = 0;   // positions of KV cache still free (whole span)
  std::string version;
  std::string address;             // where clients connect
  std::string public_name;
  std::map<std::string, double> next_pings;  // id hex of a server of block `last` -> RTT seconds
  std::vector<std::string> adapters;
};

// DHT key of one block of a model, and of the registry of models.
std::string block_key(const std::string& model, int64_t block);
inline constexpr const char kModelRegistryKey[] = "_engine.models";
// The subkey a peer writes its own entries under.
std::string peer_subkey(const std::string& id_hex);

std::string encode_server_info(const ServerInfo& s);
// Throws BadMessage on missing/mistyped fields or an impossible span.
ServerInfo decode_server_info(const msgpack::object& o);

// Reads the entries of blocks [0, n_blocks) of `model` and merges them into one
// record per server (the newest entry of each; malformed and expired ones are
// skipped). done(servers by id).
using ServerMap = std::map<std::string, ServerInfo>;
void fetch_servers(DhtNode& dht, const std::string& model, int64_t n_blocks,
                   std::function<void(ServerMap)> done);

// Number of servers in a state >= min_state covering each block.
std::vector<int> block_coverage(const ServerMap& servers, int64_t n_blocks,
                                ServerState min_state = ServerState::kOnline);

}  // namespace engine::net
