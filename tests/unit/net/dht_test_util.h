// Helpers for tests of DHT nodes on one loop: packed string values, and put/get
// run to completion (bounded by run_until's timeout).
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "loop_util.h"
#include "net/dht_node.h"

namespace nettest {

inline std::string str_value(std::string_view s) {
  engine::net::Buf b;
  engine::net::Packer pk(b);
  engine::net::pack_str(pk, s);
  return b.s;
}

// Stores a string value for ttl seconds; the number of nodes that stored it (-1: no answer).
inline int put_str(uv_loop_t* loop, engine::net::DhtNode& node, const std::string& key,
                   const std::optional<std::string>& sub, const std::string& v, double ttl = 600) {
  int stored = -1;
  node.put(key, sub, str_value(v), node.now() + ttl,
           [&](int s, int, const engine::net::LookupStats&) { stored = s; });
  EXPECT_TRUE(run_until(loop, [&] { return stored >= 0; }));
  return stored;
}

inline engine::net::GetResult get_now(uv_loop_t* loop, engine::net::DhtNode& node, const std::string& key) {
  engine::net::GetResult out;
  bool done = false;
  node.get(key, [&](const engine::net::GetResult& r) {
    out = r;
    done = true;
  });
  EXPECT_TRUE(run_until(loop, [&] { return done; }));
  return out;
}

}  // namespace nettest
