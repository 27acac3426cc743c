// Index records: the DHT hashes its keys, so a reader cannot list what it
// holds. To let a watcher (the health page) discover what a swarm runs, peers
// also announce themselves under two well-known keys (docs/protocol.md §11):
//   "_engine.models"  subkey <model name> -> {"blocks": n, "n_embd": d}
//                     (block servers, with the lifetime of their block records)
//   "_engine.runs"    subkey <run name>   -> {"target_batch": n, "parent": str}
//                     (training peers, with the lifetime of their progress)
// The subkeys are names, not "@<id>": every peer of a model or run writes the
// same entry, and the newest expiration keeps it alive while any of them does.
// Readers cap how many entries they take, so a flood of bogus names cannot make
// a crawl unbounded.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "net/dht_node.h"

namespace engine::net {

inline constexpr const char kRunRegistryKey[] = "_engine.runs";
inline constexpr size_t kMaxIndexEntries = 64;  // taken per crawl, in name order

struct ModelEntry {
  std::string name;
  int64_t blocks = 0;  // transformer blocks of the model
  int64_t n_embd = 0;
};

struct RunEntry {
  std::string name;          // the collaborative run ("<run>.s1" for a SWARM stage)
  std::string parent;        // the SWARM run it belongs to ("" when none)
  int64_t target_batch = 0;  // samples per collaboration step
};

std::string encode_model_entry(const ModelEntry& m);
// Throws BadMessage on a malformed value (missing fields, blocks not in 1..2^20).
ModelEntry decode_model_entry(const std::string& name, const msgpack::object& o);
std::string encode_run_entry(const RunEntry& r);
// Throws BadMessage on a malformed value (negative target, parent over 256 bytes).
RunEntry decode_run_entry(const std::string& name, const msgpack::object& o);

// The live, well-formed entries of an index record, by name, at most kMaxIndexEntries.
std::vector<ModelEntry> model_entries(const Record& rec, double now);
std::vector<RunEntry> run_entries(const Record& rec, double now);

// Loop thread only.
void publish_model_entry(DhtNode& dht, const ModelEntry& m, double expiration,
                         std::function<void(bool ok)> done);
void publish_run_entry(DhtNode& dht, const RunEntry& r, double expiration, std::function<void(bool ok)> done);
void fetch_models(DhtNode& dht, std::function<void(std::vector<ModelEntry>)> done);
void fetch_runs(DhtNode& dht, std::function<void(std::vector<RunEntry>)> done);

}  // namespace engine::net
