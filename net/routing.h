// Choosing a chain of servers that covers blocks [from, to) (after Petals'
// sequence manager). Pure functions over announced ServerInfo records, so they
// are unit-tested without a network.
//
// The graph: nodes are block positions from..to; a server with span [s, e)
// gives an edge from every position a in [s, e) to min(e, to). A client may
// enter a server anywhere in its span but leaves it only at the span's end (or
// at `to`), so the chain changes servers only at span ends.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "net/server_info.h"

namespace engine::net {

struct RouteHop {
  std::string id;       // server id (hex)
  std::string address;
  int64_t first = 0, last = 0;  // blocks this hop runs
};
using Route = std::vector<RouteHop>;

enum class RouteMode {
  kMinLatency,     // inference: compute time per block from inference_rps + a round trip per hop
  kMaxThroughput,  // forward/backward: time per block from forward_rps (batch work), small hop cost
};

struct RouteOptions {
  RouteMode mode = RouteMode::kMinLatency;
  std::set<std::string> banned;               // server ids to avoid
  std::map<std::string, double> rtt_s;        // measured round trips client -> server (by id)
  double default_rtt_s = 0.01;                // for servers we have not measured
  int64_t cache_tokens_needed = 0;            // a session's length: servers with less cache left...
  double short_cache_penalty_s = 1000.0;      // ...cost this much extra (routed around, still a last resort)
  int64_t batch_tokens = 1;                   // kMaxThroughput: tokens per request
};

// Cheapest chain from `from` to `to` over servers that are online and not
// banned; empty if the blocks are not covered. Ties are broken by server id so
// the choice is deterministic.
Route find_route(const ServerMap& servers, int64_t from, int64_t to, const RouteOptions& opts);

// Expected seconds a route costs (the quantity find_route minimises).
double route_cost(const ServerMap& servers, const Route& r, const RouteOptions& opts);

std::string route_to_string(const Route& r);

}  // namespace engine::net
