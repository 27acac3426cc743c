// --identity and --swarm-key: who this node is and which private swarm it
// belongs to. Every command that joins a swarm takes them (net/identity.h,
// net/swarm_key.h).
#pragma once
#include <memory>
#include <string>

#include "core/cli.h"
#include "net/identity.h"
#include "net/rpc.h"
#include "net/swarm_key.h"

namespace engine {

struct SecurityFlags {
  std::string identity_path, swarm_key_path;

  void add_to(ArgParser& p) {
    p.add("--identity", "PATH", "Ed25519 key file of this node (created 0600 if missing; default: a fresh key)",
          &identity_path);
    p.add("--swarm-key", "FILE", "private swarm: only holders of this key (engine swarm-key -o FILE) can connect",
          &swarm_key_path);
  }
  // Null without --identity (the Rpc then makes a fresh key).
  std::shared_ptr<const net::Identity> identity() const {
    if (identity_path.empty()) return nullptr;
    if (!identity_) identity_ = std::make_shared<const net::Identity>(net::Identity::load_or_create(identity_path));
    return identity_;
  }
  // Null without --swarm-key (an open swarm).
  std::shared_ptr<const net::SwarmKey> swarm_key() const {
    if (swarm_key_path.empty()) return nullptr;
    if (!key_) key_ = std::make_shared<const net::SwarmKey>(net::load_swarm_key(swarm_key_path));
    return key_;
  }
  void apply(net::RpcOptions& o) const {
    o.identity = identity();
    o.swarm_key = swarm_key();
  }

 private:
  mutable std::shared_ptr<const net::Identity> identity_;
  mutable std::shared_ptr<const net::SwarmKey> key_;
};

}  // namespace engine
