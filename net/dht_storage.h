// What a DHT node holds: values with absolute expiration times (DHT time is
// Unix seconds). A key holds either one plain value or a dictionary of
// subkey -> value, each subkey with its own expiration. A write wins only if
// its expiration is strictly newer than what it replaces, so replays and
// republished copies never roll a value back.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/node_id.h"

namespace engine::net {

struct ValueEntry {
  std::string value;  // an opaque msgpack-encoded object
  double expiration = 0;
  bool operator==(const ValueEntry&) const = default;
};

struct Record {
  bool is_dict = false;
  ValueEntry plain;                         // when !is_dict
  std::map<std::string, ValueEntry> dict;   // when is_dict
  double max_expiration() const;
  bool empty() const { return is_dict ? dict.empty() : plain.expiration == 0; }
};

// Folds `in` into `into` with the store rules (used to merge the answers of
// several peers; both are assumed unexpired).
void merge_record(Record& into, const Record& in);

class Storage {
 public:
  struct Limits {
    size_t max_keys = 100000;
    size_t max_value_bytes = 64 << 10;
    size_t max_subkey_bytes = 256;
    size_t max_subkeys = 1024;
  };
  Storage() = default;
  explicit Storage(Limits l) : limits_(l) {}

  enum class Result { kStored, kOlder, kExpired, kTooLarge, kFull };
  // subkey == nullopt stores a plain value.
  Result store(const NodeId& key, const std::optional<std::string>& subkey, std::string_view value,
               double expiration, double now);
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
