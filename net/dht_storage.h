// What a DHT node holds: values with absolute expiration times (DHT time is
// Unix seconds). A key holds either one plain value or a dictionary of
// subkey -> value, each subkey with its own expiration. A write wins only if
// its expiration is strictly newer than what it replaces, so replays and
// republished copies never roll a value back. Owned subkeys ("@<id>", signed:
// net/dht_record.h) outrank unauthenticated plain values, so nobody can wipe
// a peer's record by writing a plain value over its key.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/dht_record.h"
#include "net/node_id.h"

namespace engine::net {

struct ValueEntry {
  ValueEntry() = default;
  ValueEntry(std::string v, double exp, std::string pk_ = {}, std::string sig_ = {})
      : value(std::move(v)), expiration(exp), pk(std::move(pk_)), sig(std::move(sig_)) {}
  std::string value;  // an opaque msgpack-encoded object
  double expiration = 0;
  std::string pk, sig;  // the owner's public key and signature (owned subkeys only; else empty)
  bool operator==(const ValueEntry&) const = default;
};

struct Record {
  bool is_dict = false;
  ValueEntry plain;                         // when !is_dict
  std::map<std::string, ValueEntry> dict;   // when is_dict
  double max_expiration() const;
  bool empty() const { return is_dict ? dict.empty() : plain.expiration == 0; }
};

// Checks an entry about to be stored (its signature); called only for writes
// that the store rules would accept, so refused duplicates cost nothing.
using EntryCheck = std::function<bool(const std::optional<std::string>& subkey, const ValueEntry&)>;

// Folds `in` into `into` with the store rules (used to merge the answers of
// several peers; both are assumed unexpired). Entries failing `check` are skipped.
void merge_record(Record& into, const Record& in, const EntryCheck& check = {});

class Storage {
 public:
  struct Limits {
    size_t max_keys = 100000;
    size_t max_value_bytes = 64 << 10;
    size_t max_subkey_bytes = 256;
    size_t max_subkeys = 1024;
    double max_ahead_s = kMaxTtlS + kClockSkewS;  // farthest expiration accepted, from now
  };
  Storage() = default;
  explicit Storage(Limits l) : limits_(l) {}

  enum class Result { kStored, kOlder, kExpired, kTooFar, kTooLarge, kFull, kRejected };
  // subkey == nullopt stores a plain value. kRejected: `check` refused it.
  Result store(const NodeId& key, const std::optional<std::string>& subkey, const ValueEntry& e, double now,
               const EntryCheck& check = {});
  // An unsigned value.
  Result store(const NodeId& key, const std::optional<std::string>& subkey, std::string_view value,
               double expiration, double now) {
    return store(key, subkey, ValueEntry{std::string(value), expiration, {}, {}}, now);
  }
  // The unexpired part of a key's record.
  std::optional<Record> get(const NodeId& key, double now);
  void purge(double now);
  size_t size() const { return records_.size(); }
  std::vector<std::pair<NodeId, Record>> items(double now);

 private:
  Limits limits_;
  std::unordered_map<NodeId, Record, NodeIdHash> records_;
};

const char* storage_result_name(Storage::Result r);

}  // namespace engine::net
