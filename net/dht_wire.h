// msgpack encoding of what DHT RPCs carry (docs/protocol.md §6): records in
// dht.find answers and items of dht.store. Decoding is strict (BadMessage)
// but checks no signature: that is the storing or reading node's job
// (net/dht_record.h), after the store rules say the entry would be kept.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "net/dht_storage.h"
#include "net/msg.h"

namespace engine::net {

struct StoreItem {
  NodeId key;
  std::optional<std::string> subkey;
  ValueEntry entry;  // with the owner's public key and signature for owned subkeys
  NodeId origin;     // the peer that wrote it (replicas keep it)
};

// {"exp", "value"} or {"dict": [[subkey, value, exp(, pk, sig)]...]}.
void pack_record(Packer& pk, Buf& b, const Record& r);
// Of two entries for one subkey in one answer, the later expiration is kept.
Record unpack_record(const msgpack::object& o, size_t max_subkeys);

// [key, subkey|nil, value, exp, origin(, pk, sig)].
void pack_store_item(Packer& pk, Buf& b, const StoreItem& it);
StoreItem unpack_store_item(const msgpack::object& o);
// The arguments of dht.store: {"items": [item...], "replica": bool}.
std::string encode_store_args(const std::vector<StoreItem>& items, bool replica);

}  // namespace engine::net
