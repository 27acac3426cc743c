#include "net/dht_storage.h"

#include <algorithm>

namespace engine::net {

double Record::max_expiration() const {
  if (!is_dict) return plain.expiration;
  double m = 0;
  for (auto& [k, v] : dict) m = std::max(m, v.expiration);
  return m;
}

const char* storage_result_name(Storage::Result r) {
  switch (r) {
    case Storage::Result::kStored: return "stored";
    case Storage::Result::kOlder: return "not newer than the stored value";
    case Storage::Result::kExpired: return "already expired";
    case Storage::Result::kTooLarge: return "too large";
    case Storage::Result::kFull: return "storage full";
  }
  return "?";
}

// The store rule, shared by storage and merging: `rec` absorbs one write.
static Storage::Result apply(Record& rec, bool exists, const std::optional<std::string>& subkey,
                             const ValueEntry& e, size_t max_subkeys) {
  if (!subkey) {
    if (exists && e.expiration <= rec.max_expiration()) return Storage::Result::kOlder;
    rec.is_dict = false;
    rec.dict.clear();
    rec.plain = e;
    return Storage::Result::kStored;
  }
  if (exists && !rec.is_dict) {
    if (e.expiration <= rec.plain.expiration) return Storage::Result::kOlder;
    rec.plain = {};  // a newer dictionary entry replaces an older plain value
  }
  rec.is_dict = true;
  auto it = rec.dict.find(*subkey);
  if (it != rec.dict.end()) {
    if (e.expiration <= it->second.expiration) return Storage::Result::kOlder;
    it->second = e;
    return Storage::Result::kStored;
  }
  if (rec.dict.size() >= max_subkeys) return Storage::Result::kFull;
  rec.dict.emplace(*subkey, e);
  return Storage::Result::kStored;
}

void merge_record(Record& into, const Record& in) {
  bool exists = !into.empty();
  if (!in.is_dict) {
    if (in.plain.expiration > 0) apply(into, exists, std::nullopt, in.plain, SIZE_MAX);
    return;
  }
  for (auto& [sub, e] : in.dict) {
    apply(into, exists, sub, e, SIZE_MAX);
    exists = !into.empty();
  }
}

static void drop_expired(Record& r, double now) {
  if (!r.is_dict) {
    if (r.plain.expiration <= now) r.plain = {};
    return;
  }
  for (auto it = r.dict.begin(); it != r.dict.end();)
    it = it->second.expiration <= now ? r.dict.erase(it) : std::next(it);
}

Storage::Result Storage::store(const NodeId& key, const std::optional<std::string>& subkey, std::string_view value,
                               double expiration, double now) {
  if (expiration <= now) return Result::kExpired;
  if (value.size() > limits_.max_value_bytes || (subkey && subkey->size() > limits_.max_subkey_bytes))
    return Result::kTooLarge;
  auto it = records_.find(key);
  bool exists = it != records_.end();
  if (exists) {
    drop_expired(it->second, now);
    exists = !it->second.empty();
  } else if (records_.size() >= limits_.max_keys) {
    purge(now);
    if (records_.size() >= limits_.max_keys) return Result::kFull;
  }
  Record& rec = exists ? it->second : records_[key];
  Result r = apply(rec, exists, subkey, ValueEntry{std::string(value), expiration}, limits_.max_subkeys);
  if (rec.empty()) records_.erase(key);
  return r;
}

std::optional<Record> Storage::get(const NodeId& key, double now) {
  auto it = records_.find(key);
  if (it == records_.end()) return std::nullopt;
  drop_expired(it->second, now);
  if (it->second.empty()) {
    records_.erase(it);
    return std::nullopt;
  }
  return it->second;
}

void Storage::purge(double now) {
  for (auto it = records_.begin(); it != records_.end();) {
    drop_expired(it->second, now);
    it = it->second.empty() ? records_.erase(it) : std::next(it);
  }
}

std::vector<std::pair<NodeId, Record>> Storage::items(double now) {
  purge(now);
  return {records_.begin(), records_.end()};
}

}  // namespace engine::net
