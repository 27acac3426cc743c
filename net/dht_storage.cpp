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
    case Storage::Result::kTooFar: return "expires too far in the future";
    case Storage::Result::kRejected: return "bad or missing signature";
    case Storage::Result::kTooLarge: return "too large";
    case Storage::Result::kFull: return "storage full";
  }
  return "?";
}

static bool has_owned(const Record& r) {
  if (!r.is_dict) return false;
  for (auto& [sub, e] : r.dict)
    if (subkey_owner(sub)) return true;
  return false;
}

// The store rule, shared by storage and merging: `rec` absorbs one write.
// Every refusal is decided before anything changes, and `check` (a signature
// verification) runs only for a write that would otherwise win.
static Storage::Result apply(Record& rec, bool exists, const std::optional<std::string>& subkey,
                             const ValueEntry& e, size_t max_subkeys, const EntryCheck& check) {
  using R = Storage::Result;
  if (!subkey) {
    // A plain value is unauthenticated: it never replaces owned (signed) entries.
    if (exists && (has_owned(rec) || e.expiration <= rec.max_expiration())) return R::kOlder;
    if (check && !check(subkey, e)) return R::kRejected;
    rec.is_dict = false;
    rec.dict.clear();
    rec.plain = e;
    return R::kStored;
  }
  bool replaces_plain = exists && !rec.is_dict;
  // A newer dictionary entry replaces an older plain value; an owned one
  // replaces any plain value, so the merge of several answers does not depend
  // on whether a forged plain value arrived first.
  if (replaces_plain && !subkey_owner(*subkey) && e.expiration <= rec.plain.expiration) return R::kOlder;
  auto it = rec.dict.find(*subkey);
  if (it != rec.dict.end() && e.expiration <= it->second.expiration) return R::kOlder;
  if (it == rec.dict.end() && rec.dict.size() >= max_subkeys) return R::kFull;
  if (check && !check(subkey, e)) return R::kRejected;
  if (replaces_plain) rec.plain = {};
  rec.is_dict = true;
  rec.dict[*subkey] = e;
  return R::kStored;
}

void merge_record(Record& into, const Record& in, const EntryCheck& check) {
  bool exists = !into.empty();
  if (!in.is_dict) {
    if (in.plain.expiration > 0) apply(into, exists, std::nullopt, in.plain, SIZE_MAX, check);
    return;
  }
  for (auto& [sub, e] : in.dict) {
    apply(into, exists, sub, e, SIZE_MAX, check);
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

Storage::Result Storage::store(const NodeId& key, const std::optional<std::string>& subkey, const ValueEntry& e,
                               double now, const EntryCheck& check) {
  // (Written so that a NaN expiration is refused as expired, infinity as too far.)
  if (!(e.expiration > now)) return Result::kExpired;
  // A bounded lifetime bounds how long a captured signed record can be replayed.
  if (!(e.expiration <= now + limits_.max_ahead_s)) return Result::kTooFar;
  if (e.value.size() > limits_.max_value_bytes || (subkey && subkey->size() > limits_.max_subkey_bytes))
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
  Result r = apply(rec, exists, subkey, e, limits_.max_subkeys, check);
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
